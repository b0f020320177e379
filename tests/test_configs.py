"""Every config composes: train.yaml with each experiment file (found recursively with pathlib) under both presets,
every mixer config builds its mixer, and every sweep's experiment list names existing experiment files."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from fastformer.cells import cells
from fastformer.mixers import MIXERS, build_mixer

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
EXPERIMENTS = cells()  # every experiment= name: the cell files and the mixer-only cells (fastformer/cells)
os.environ.setdefault("PROJECT_ROOT", str(ROOT))


def compose_train(overrides: list[str]):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("train", overrides=overrides, return_hydra_config=True)


def test_default_config_composes():
    cfg = compose_train([])
    assert cfg.model.mixer.name in MIXERS and cfg.preset_name == "quick"


@pytest.mark.parametrize("preset", ["quick", "paper"])
@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes_and_resolves(experiment, preset):
    cfg = compose_train([f"experiment={experiment}", f"preset={preset}"])
    OmegaConf.resolve(cfg)  # every interpolation resolves
    parts, ds = str(cfg.experiment_name).split("/"), experiment.split("/")[0]
    assert parts[0] == ds and parts[-1] == cfg.row, cfg.experiment_name
    assert cfg.model.mixer.name in MIXERS, f"{experiment}: unknown mixer {cfg.model.mixer.name}"


@pytest.mark.parametrize("path", sorted((CONFIGS / "model" / "mixer").glob("*.yaml")), ids=lambda p: p.stem)
def test_mixer_config_builds(path):
    kw = yaml.safe_load(path.read_text())
    name = kw.pop("name")
    assert name == path.stem
    build_mixer(name, d_model=32, n_heads=4, **({"max_len": 64} if name == "linformer" else {}), **kw)


@pytest.mark.parametrize("path", sorted((CONFIGS / "sweep").glob("*.yaml")), ids=lambda p: p.stem)
def test_sweep_lists_existing_experiments(path):
    params = yaml.safe_load(path.read_text())["hydra"]["sweeper"]["params"]
    exps = [e.strip() for e in str(params.get("experiment", "")).split(",") if e.strip()]
    missing = [e for e in exps if e not in EXPERIMENTS]
    assert not missing, f"{path.name} names experiments without a file: {missing}"
    ablations = [a.strip() for a in str(params.get("ablation", "")).split(",") if a.strip()]
    assert all((CONFIGS / "ablation" / f"{a}.yaml").exists() for a in ablations), ablations


def test_reproduce_waves_list_existing_experiments():
    waves = yaml.safe_load((CONFIGS / "reproduce" / "reproduce.yaml").read_text())["stage_waves"]
    exps = [e for stages in waves.values() for ws in stages.values() for w in ws for e in w["experiments"]]
    assert exps and not [e for e in exps if e not in EXPERIMENTS]


@pytest.mark.parametrize("launcher", ["local_parallel", "slurm"])
def test_launcher_configs_compose(launcher):
    cfg = compose_train(["+sweep=table4", f"hydra/launcher={launcher}"])
    assert "_target_" in cfg.hydra.launcher


@pytest.mark.parametrize("path", sorted((ROOT / "configs" / "task").glob("*.yaml")), ids=lambda p: p.stem)
def test_task_config_names_a_registered_task(path):
    """``task.name`` picks the class from TASKS; the informational ``_target_`` names that same class."""
    from fastformer.tasks import TASKS

    cfg = yaml.safe_load(path.read_text())
    cls = TASKS[cfg["name"]]
    assert cfg["_target_"] == f"{cls.__module__}.{cls.__qualname__}" and cls.name == cfg["name"] == path.stem


def test_cpu_ablation_waves_cover_the_sweep_once_figure_by_figure():
    """The cpu preset runs its ablations one figure per wave (a wave's ``overrides``): together the waves run every
    variant of configs/sweep/ablations.yaml exactly once, over imdb/fastformer at seeds 1-3, Figure 3 first."""
    import sys

    from hydra import compose, initialize_config_dir

    sys.path.insert(0, str(ROOT / "scripts"))
    import reproduce

    with initialize_config_dir(str(CONFIGS / "reproduce"), version_base="1.3"):
        rcfg = compose("reproduce", overrides=["preset=cpu", "logger=none"])
    cmds = list(reproduce.stage_commands("ablations", rcfg))
    waves = [[a for c in cmd if c.startswith("ablation=") for a in c.split("=", 1)[1].split(",")] for cmd in cmds]
    sweep = yaml.safe_load((CONFIGS / "sweep" / "ablations.yaml").read_text())["hydra"]["sweeper"]["params"]
    listed = [a.strip() for a in sweep["ablation"].split(",")]
    assert sorted(a for w in waves for a in w) == sorted(listed)
    assert waves[0] == ["interaction_concat", "interaction_add"]
    assert all("seed=1,2,3" in cmd and "experiment=imdb/fastformer" in cmd for cmd in cmds)
