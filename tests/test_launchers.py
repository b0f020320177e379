"""Multirun layout and launchers, for real: where Hydra puts each sweep job, 2-job sweeps through the joblib and
submitit launchers, and the Optuna example tuning on validation.

Job dirs are computed the way Hydra computes them, without running a job (:func:`sweep_job_dirs`: the sweeper's
params + the command-line overrides, split by BasicSweeper, each job's config re-composed by load_sweep_config, then
``abspath(join(hydra.sweep.dir, hydra.sweep.subdir))`` as run_job does). `--cfg hydra` is no substitute: it prints the
master config, whose override_dirname holds the unsplit sweep lists. The launcher tests check that real runs land in
exactly those dirs.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
sys.path.insert(0, str(ROOT / "scripts"))
import reproduce  # noqa: E402

# a synthetic probe (no data files): a few seconds per job on one busy core
PROBE = ["experiment=probe/transformer", "data=probe_dup", "data.seq_len=16", "data.n_train=64", "data.n_eval=32",
         "trainer.max_epochs=1", "model.d_model=16", "model.n_heads=2", "logger=none", "trainer.progress_bar=false"]
OLD_LAYOUT = "${experiment_name}/seed${seed}"  # the paper-table sweeps' job dir below hydra.sweep.dir


def sweep_job_dirs(overrides: list[str], pick: list[int] | None = None) -> list[tuple[str, dict]]:
    """(job dir, job config) of the jobs (indices ``pick``, default all) of `train.py -m <overrides>`."""
    from hydra import initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import open_dict

    saved = HydraConfig.instance().cfg
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        loader = GlobalHydra.instance().hydra.config_loader
        master = loader.load_configuration("train", list(overrides), run_mode=RunMode.MULTIRUN)
        args = [f"{k}={v}" for k, v in (master.hydra.sweeper.params or {}).items()] + list(master.hydra.overrides.task)
        jobs = BasicSweeper.split_arguments(OverridesParser.create(loader).parse_overrides(args), None)[0]
        out = []
        for idx in range(len(jobs)) if pick is None else [i % len(jobs) for i in pick]:
            cfg = loader.load_sweep_config(master, list(jobs[idx]))
            with open_dict(cfg):
                cfg.hydra.job.id = cfg.hydra.job.num = idx
            HydraConfig.instance().set_config(cfg)
            out.append((os.path.abspath(os.path.join(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir))),
                        {"experiment_name": cfg.experiment_name, "seed": cfg.seed}))
    HydraConfig.instance().cfg = saved
    return out


def stage_command(stage: str, preset: str, user: list[str]) -> list[str]:
    """The overrides scripts/reproduce.py passes to `train.py -m` for ``stage`` (its subprocess call captured)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(str(CONFIGS / "reproduce"), version_base="1.3"):
        cfg = compose("reproduce", overrides=[f"preset={preset}", "logger=none",
                                              "overrides=[" + ",".join(f"'{o}'" for o in user) + "]"])
    cmds = []
    orig = reproduce.subprocess.call
    reproduce.subprocess.call = lambda cmd, **kw: cmds.append(cmd) or 0
    try:
        reproduce.run_stage(stage, cfg)
    finally:
        reproduce.subprocess.call = orig
    assert cmds[0][2] == "-m"
    return cmds[0][3:]


def launch(args: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PROJECT_ROOT": str(ROOT), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "-m", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


# ---- layout -------------------------------------------------------------------------------------------------------

def test_adhoc_sweep_gives_each_override_value_its_own_dir():
    dirs = sweep_job_dirs(["experiment=imdb/fastformer", "optimizer.lr=1e-3,3e-4", "hydra.sweep.dir=/runs"])
    assert [d for d, _ in dirs] == ["/runs/imdb/fastformer/optimizer.lr=0.001/seed1",
                                    "/runs/imdb/fastformer/optimizer.lr=0.0003/seed1"]


def test_adhoc_sweep_without_result_changing_overrides_keeps_experiment_seed_layout():
    """Only layout / environment keys (excluded from override_dirname) -> <experiment>/seed<k>, as before."""
    dirs = sweep_job_dirs(["experiment=imdb/fastformer,amazon/transformer", "seed=1,2", "logger=none", "trainer=gpu",
                           "trainer.device=cpu", "data.root=/d", "paths.cache_dir=/c", "skip_finished=true",
                           "trainer.stop_after_epochs=1", "preset=paper", "hydra.sweep.dir=/runs"])
    assert [d for d, _ in dirs] == [f"/runs/{e}/seed{s}" for e in ("imdb/fastformer", "amazon/transformer")
                                    for s in (1, 2)]


USER = ["trainer=gpu", "model.d_model=32", "paths.data_root=/d", "paths.cache_dir=/c", "trainer.max_epochs=1",
        "optimizer.lr=1e-3"]


@pytest.mark.parametrize("stage", list(reproduce.STAGE_TABLES))
@pytest.mark.parametrize("user", [[], USER], ids=["plain", "user_overrides"])
def test_stage_job_dirs_unchanged(stage, user):
    """Every paper-table stage, as scripts/reproduce.py launches it (quick preset, its seeds and stage_overrides, plus
    user `overrides`): job dir == <runs_root>/<experiment_name>/seed<k> (first, second and last job)."""
    cmd = stage_command(stage, "quick", user)
    runs_root = f"{ROOT}/logs/multiruns/quick"
    assert f"hydra.sweep.dir={runs_root}" in cmd
    dirs = sweep_job_dirs(cmd, pick=[0, 1, -1])
    for d, cfg in dirs:
        assert d == f"{runs_root}/{cfg['experiment_name']}/seed{cfg['seed']}", (stage, d)
    assert len({d for d, _ in dirs}) == 3


def test_stage_first_dirs_literal():
    """The literal dirs (not only the formula) of table4's and probes_recall's first jobs."""
    root = f"{ROOT}/logs/multiruns/quick"
    t4 = [d for d, _ in sweep_job_dirs(stage_command("table4", "quick", USER), pick=[0, 1])]
    assert t4 == [f"{root}/amazon/fastformer/seed1", f"{root}/amazon/transformer/seed1"]
    pr = [d for d, _ in sweep_job_dirs(stage_command("probes_recall", "quick", []), pick=[0, 1, 3])]
    p = f"{root}/probe/probe_mqar"
    assert pr == [f"{p}/L32_P2/transformer/seed1", f"{p}/L32_P2/transformer/seed2", f"{p}/L32_P4/transformer/seed1"]


@pytest.mark.parametrize("stage", list(reproduce.STAGE_TABLES))
def test_stage_files_pin_the_table_layout(stage):
    cfg = yaml.safe_load((CONFIGS / "sweep" / f"{stage}.yaml").read_text())
    assert cfg["hydra"]["sweep"]["subdir"] == OLD_LAYOUT


# ---- launchers ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("launcher", ["local_parallel", pytest.param("local_submitit", marks=pytest.mark.slow)])
def test_launcher_runs_two_jobs_into_their_own_dirs(launcher, tmp_path):
    args = [*PROBE, f"paths.cache_dir={tmp_path}/cache", "optimizer.lr=1e-3,3e-4", f"hydra/launcher={launcher}",
            f"hydra.sweep.dir={tmp_path}/sweep"]
    expected = [d for d, _ in sweep_job_dirs(args)]
    launch(args)
    assert len(set(expected)) == 2
    metrics = [json.loads((Path(d) / "metrics.json").read_text()) for d in expected]
    assert metrics[0]["config_hash"] != metrics[1]["config_hash"]
    lrs = [OmegaConf.load(Path(d) / ".hydra" / "config.yaml").optimizer.lr for d in expected]
    assert lrs == [1e-3, 3e-4]
    assert sorted(p.parent for p in (tmp_path / "sweep").rglob("metrics.json")) == sorted(Path(d) for d in expected)
    if launcher == "local_submitit":
        assert list((tmp_path / "sweep" / ".submitit").glob("*/*_result.pkl"))


# ---- Optuna -------------------------------------------------------------------------------------------------------

@pytest.mark.slow  # ~8 s on 2 cores; make test-full runs it
def test_optuna_example_tunes_on_validation(fixture_root, tmp_path):
    """+sweep=optuna_example, 2 trials: optimization_results.yaml's best value is a trial's validation monitor value
    (the best of the two, direction maximize), and the best params are that trial's."""
    args = ["+sweep=optuna_example", "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=1",
            f"hydra.sweep.dir={tmp_path}/optuna", f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache",
            "logger=none", "trainer.progress_bar=false", "model.d_model=32", "model.n_heads=4", "data.max_len=64",
            "task.batch_size=16", "trainer.max_epochs=1"]
    launch(args)
    res = OmegaConf.load(tmp_path / "optuna" / "optimization_results.yaml")
    trials = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "optuna").rglob("metrics.json")}
    assert sorted(trials) == ["trial0", "trial1"]
    val = [m["val"][m["monitor"]] for m in trials.values()]
    assert all(m["monitor"] == "acc" and m["experiment"] == "imdb/fastformer" for m in trials.values())
    assert res.best_value == max(val), (res, val, [m["test"] for m in trials.values()])
    assert 1e-4 <= res.best_params["optimizer.lr"] <= 1e-2 and 0 <= res.best_params["model.dropout"] <= 0.3
    best_lrs = [OmegaConf.load(tmp_path / "optuna" / t / ".hydra" / "config.yaml").optimizer.lr
                for t, m in trials.items() if m["val"][m["monitor"]] == res.best_value]
    assert any(lr == pytest.approx(res.best_params["optimizer.lr"]) for lr in best_lrs), (best_lrs, res.best_params)
