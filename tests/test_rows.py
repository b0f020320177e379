"""Table rows come from explicit fields: every experiment file names its row (``variant``: the mixer, or the
variant / ablation name), metrics.json records it beside task, dataset and mixer, and the table builders place runs by
those fields, never by parsing the experiment string (only the legacy shim in fastformer/results/common.py does, for
records written before "variant" existed)."""
from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
EXPERIMENTS = sorted(str(p.relative_to(CONFIGS / "experiment").with_suffix("")) for p in
                     (CONFIGS / "experiment").rglob("*.yaml"))


@pytest.fixture(scope="module")
def compose_experiment():
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        yield lambda name: compose("train", overrides=[f"experiment={name}", "logger=none"])


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_names_its_row(compose_experiment, name):
    """cfg.variant (the row written to metrics.json) is the last component of the experiment's name; it is the mixer
    unless the file sets it (variants of one mixer, ablations, the PLM rows)."""
    cfg = compose_experiment(name)
    assert cfg.variant == str(cfg.experiment_name).split("/")[-1], (name, cfg.variant, cfg.experiment_name)
    assert cfg.variant  # never empty


def test_experiments_found():
    assert len(EXPERIMENTS) > 90 and "ablation/imdb/global_key_from_k" in EXPERIMENTS
