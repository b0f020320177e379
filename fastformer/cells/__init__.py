"""The table cells that only pick the mixer: ``experiment=<dataset>/<mixer>`` without a file of its own.

A cell of the paper's tables is a dataset's shared settings (``configs/experiment/<dataset>/base.yaml``) plus a mixer
(``configs/model/mixer/<mixer>.yaml``) plus whatever the cell changes (Table 8's per-dataset window, block or
projection sizes: ``configs/experiment/<dataset>/<mixer>.yaml``). Most cells change nothing, so instead of a file that
would only repeat its two defaults, this package registers that composition with Hydra's ConfigStore for every
dataset base and every mixer config that has no cell file::

    experiment=imdb/fastformer   ==   experiment=imdb/base model/mixer=fastformer

A name that has a file is not registered (the file is that cell), so giving a cell its own settings is adding
``configs/experiment/<dataset>/<mixer>.yaml``; adding a mixer config (or a dataset base) makes its cells exist
everywhere at once. ``configs/train.yaml`` puts this package on the search path
(``hydra.searchpath: [pkg://fastformer.cells]``): Hydra imports it while building the search path of every
composition of ``train.yaml`` (``scripts/train.py``, its multirun workers, ``hydra.compose`` in tests and notebooks),
which runs :func:`register` below. The package holds no config files of its own.

Registration reads this checkout's ``configs/`` (beside the package). A config dir elsewhere (``--config-dir``, a
copy) that holds a file under a registered name collides with the registered node (Hydra's automatic schema
matching rejects it): there, add the cell's file to this checkout's ``configs/experiment/`` instead.
"""
from __future__ import annotations

from pathlib import Path

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def datasets(configs: Path = CONFIGS) -> list[str]:
    """The dataset groups: every ``configs/experiment/<dataset>/`` with a ``base.yaml``."""
    return sorted(p.parent.name for p in (configs / "experiment").glob("*/base.yaml"))


def mixer_only_cells(configs: Path = CONFIGS) -> list[str]:
    """``<dataset>/<mixer>`` for every dataset base and mixer config that has no cell file: the cells registered."""
    mixers = _stems(configs / "model" / "mixer")
    return [f"{d}/{m}" for d in datasets(configs) for m in mixers
            if not (configs / "experiment" / d / f"{m}.yaml").is_file()]


def cells(configs: Path = CONFIGS) -> list[str]:
    """Every ``experiment=`` name, files and registered cells alike (the bases excluded), sorted."""
    root = configs / "experiment"
    files = [p.relative_to(root).with_suffix("").as_posix() for p in root.rglob("*.yaml") if p.stem != "base"]
    return sorted([*files, *mixer_only_cells(configs)])


def register(configs: Path = CONFIGS) -> list[str]:
    """Store ``experiment/<dataset>/<mixer>`` (package ``_global_``: the dataset base, then the mixer) for every
    mixer-only cell; returns their names. Idempotent: storing a name again replaces it with the same node."""
    from hydra.core.config_store import ConfigStore

    store = ConfigStore.instance()
    names = mixer_only_cells(configs)
    for name in names:
        dataset, mixer = name.split("/")
        store.store(group=f"experiment/{dataset}", name=mixer, package="_global_", provider="fastformer.cells",
                    node={"defaults": [f"/experiment/{dataset}/base", {"override /model/mixer": mixer}, "_self_"]})
    return names


register()
