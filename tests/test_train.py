"""End to end through the real pipeline (Hydra config -> task -> Trainer -> metrics.json) on fixture data:
one training step per mixer, learning, resume after interruption == uninterrupted, failure reporting, and the
sweep + table path of `make reproduce-table` at tiny scale."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest
from wandb_offline import read_offline_run

from fastformer.mixers import MIXERS

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train import train  # noqa: E402

TINY = ["logger=none", "trainer.progress_bar=false", "model.d_model=32", "model.n_heads=4", "data.max_len=64",
        "task.batch_size=16"]


def run(compose_cfg, fixture_root, tmp_path, overrides, name="run"):
    cfg = compose_cfg([f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache", *TINY, *overrides])
    run_dir = tmp_path / name
    return train(cfg, str(run_dir)), run_dir


@pytest.mark.parametrize("mixer", sorted(set(MIXERS) - {"pooling_baseline"}))
def test_one_training_step_per_mixer(compose_cfg, fixture_root, tmp_path, mixer):
    over = [f"experiment=imdb/{mixer}", "trainer.max_epochs=1", "trainer.limit_train_batches=1",
            "data.max_eval=16"]
    m, run_dir = run(compose_cfg, fixture_root, tmp_path, over)
    assert m["mixer"] == mixer and m["params"] > 0 and 0 <= m["test"]["acc"] <= 100
    saved = json.loads((run_dir / "metrics.json").read_text())
    assert saved["test"] == m["test"] and saved["data_info"]["data_used"]
    impl = saved["mixer_impl"]  # which implementation ran: the fastformer mixer reports it, the others have one
    assert (impl["requested"] == "auto" and impl["ran"]) if mixer == "fastformer" else impl == {}, impl


@pytest.mark.parametrize("dataset", ["amazon", "imdb", "mind_topics"])
def test_fastformer_learns_fixture_data(compose_cfg, fixture_root, tmp_path, dataset):
    m, _ = run(compose_cfg, fixture_root, tmp_path, [f"experiment={dataset}/fastformer", "trainer.max_epochs=4",
                                                     "optimizer.lr=3e-3"])
    assert m["test"]["acc"] > m["test"]["majority_acc"] + 20, m["test"]


def test_resume_after_interruption_matches_uninterrupted(compose_cfg, fixture_root, tmp_path):
    over = ["experiment=amazon/fastformer", "trainer.max_epochs=3", "trainer.limit_train_batches=3"]
    full, _ = run(compose_cfg, fixture_root, tmp_path, over, name="full")
    stopped, run_dir = run(compose_cfg, fixture_root, tmp_path, over + ["trainer.stop_after_epochs=1"], name="split")
    assert stopped == {"stopped_at_epoch": 1} and (run_dir / "checkpoints" / "last.pt").exists()
    resumed, _ = run(compose_cfg, fixture_root, tmp_path, over, name="split")
    assert resumed["test"] == full["test"] and resumed["val"] == full["val"]
    assert [h["train_loss"] for h in resumed["history"]] == [h["train_loss"] for h in full["history"]]


def test_resume_refuses_a_different_config(compose_cfg, fixture_root, tmp_path):
    over = ["experiment=amazon/fastformer", "trainer.max_epochs=2", "trainer.limit_train_batches=1"]
    run(compose_cfg, fixture_root, tmp_path, over + ["trainer.stop_after_epochs=1"], name="d")
    with pytest.raises(RuntimeError, match="different config"):
        run(compose_cfg, fixture_root, tmp_path, over + ["optimizer.lr=0.5"], name="d")


def test_options_added_later_keep_the_hash_at_their_old_value(compose_cfg):
    """model.encoder.ffn_dropout arrived after runs were committed: at the value those runs had (True) it leaves the
    config hash as it was, so their checkpoints still resume; set otherwise it is a different run."""
    from omegaconf import OmegaConf

    from fastformer.train.trainer import config_hash

    cfg = compose_cfg(["experiment=imdb/fastformer"])
    assert cfg.model.encoder.ffn_dropout is True
    before = OmegaConf.create(OmegaConf.to_container(cfg))
    del before.model.encoder["ffn_dropout"]  # the config as composed before the option existed
    assert config_hash(cfg) == config_hash(before)
    off = compose_cfg(["experiment=imdb/fastformer", "model.encoder.ffn_dropout=false"])
    assert config_hash(off) != config_hash(cfg)


def test_nan_loss_stops_with_message_and_failure_is_recorded(compose_cfg, fixture_root, tmp_path):
    with pytest.raises(FloatingPointError, match="lower optimizer.lr"):
        run(compose_cfg, fixture_root, tmp_path, ["experiment=amazon/fastformer", "optimizer.lr=1e30",
                                                  "trainer.max_epochs=2"], name="nan")
    failed = json.loads((tmp_path / "nan" / "failed.json").read_text())
    assert failed["experiment"] == "amazon/fastformer" and failed["error"].startswith("TrainingDivergedError")


def test_reproduce_table_tiny(fixture_root, tmp_path):
    """`make reproduce-table` path: the sweep runs through Hydra multirun, then the table is generated."""
    env_over = [f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache", "model.d_model=32",
                "model.n_heads=4", "data.max_len=64", "trainer.max_epochs=1", "trainer.progress_bar=false",
                f"paths.log_dir={tmp_path}/logs"]
    cmd = [sys.executable, str(ROOT / "scripts" / "reproduce.py"), "logger=none", "stages=[table4]",
           f"runs_root={tmp_path}/logs/multiruns/quick", f"results_dir={tmp_path}/results",
           "overrides=[" + ",".join(f"'{o}'" for o in env_over) + "]"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    table = (tmp_path / "results" / "table4_classification.md").read_text()
    for name in ("Fastformer", "Transformer", "Longformer", "BigBird", "Linformer", "Poolingformer", "Performer"):
        assert f"| {name}" in table
    assert "failed" not in table.split("## Amazon")[1]
    assert (tmp_path / "results" / "table4_classification.csv").exists()


def test_wandb_offline_logs_config_and_metrics(compose_cfg, fixture_root, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_cfg([f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache", *TINY[1:],
                       "experiment=amazon/fastformer", "trainer.max_epochs=1", "logger=wandb"])
    assert cfg.logger.mode == "offline"
    train(cfg, str(tmp_path / "wb"))
    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    read_offline_run(runs[0])  # waits until W&B has flushed the stream (its exit record)
    record = next(runs[0].glob("*.wandb")).read_bytes()  # the offline run's record stream (config + history)
    for needle in (b"train/loss", b"val/acc", b"test/acc", b"perf/tokens_per_s", b"fastformer", b"amazon"):
        assert needle in record, needle


def test_newsrec_through_train_py_with_predict(compose_cfg, tmp_path):
    """News recommendation through the generic pipeline on synthetic MIND; predict=true writes prediction.txt."""
    cfg = compose_cfg(["experiment=mind_rec/fastformer", f"data.root={tmp_path}/data", f"paths.cache_dir={tmp_path}/c",
                       "logger=none", "trainer.progress_bar=false", "trainer.max_epochs=1", "predict=true",
                       "data.synthetic.n_news=120", "data.synthetic.n_users=60", "data.synthetic.train=200",
                       "data.synthetic.dev=40", "data.synthetic.test=40"])
    m = train(cfg, str(tmp_path / "run"))
    assert m["task"] == "newsrec" and 0 <= m["test"]["auc"] <= 100
    lines = (tmp_path / "run" / "prediction.txt").read_text().splitlines()
    assert len(lines) == 40 and all(line.split()[1].startswith("[") for line in lines)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["predict"]


@pytest.mark.parametrize("bad", ["data", "config"])
def test_single_run_bad_input_is_one_line(tmp_path, bad):
    """`python scripts/train.py` with a missing dataset (offline) or an unknown config key: one ERROR line naming the
    file (URL and where to place it) or the key, no traceback, exit code 2; the data failure is in failed.json."""
    empty = tmp_path / "data"
    empty.mkdir()
    args = ["experiment=imdb/fastformer", "logger=none", f"hydra.run.dir={tmp_path / 'run'}",
            f"paths.cache_dir={tmp_path / 'cache'}", "data.download=false"]
    if bad == "config":
        args.append("+trainer.max_epoch=3")
    env = {**os.environ, "DATA_ROOT": str(empty), "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "Traceback" not in out, out
    errors = [ln for ln in out.splitlines() if "[ERROR]" in ln]
    assert len(errors) == 1, out
    if bad == "data":
        assert str(empty / "imdb" / "aclImdb_v1.tar.gz") in errors[0] and "aclImdb_v1.tar.gz" in errors[0], out
        failed = json.loads((tmp_path / "run" / "failed.json").read_text())
        assert failed["error"].startswith("DataUnavailableError") and failed["dataset"] == "imdb"
        assert errors[0].endswith(f"[DataUnavailableError, recorded in {tmp_path / 'run' / 'failed.json'}]")
    else:
        assert "unknown config key trainer.max_epoch" in errors[0] and "max_epochs" in errors[0], out
        assert errors[0].endswith("[ConfigError, before any work]")


def test_reproduce_table_cpu_preset_tiny(fixture_root, tmp_path):
    """`make reproduce-table PRESET=cpu` at tiny scale: the preset's waves (here one wave of the decisive IMDB rows, 2
    seeds, 2 parallel 1-thread jobs as the preset runs them) train with length-grouped batches, record per-item test
    correctness, and the cpu table names its preset and gives every row's difference from the Transformer with a 95%
    interval and the per-dataset verdict."""
    env_over = [f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache", "model.d_model=32",
                "model.n_heads=4", "data.max_len=64", "trainer.max_epochs=1", "trainer.progress_bar=false",
                "data.vocab_size=500"]
    wave = ('stage_waves.cpu.table4=[{seeds: "1,2", experiments: [imdb/transformer, imdb/fastformer, '
            'imdb/pooling_baseline]}]')
    cmd = [sys.executable, str(ROOT / "scripts" / "reproduce.py"), "preset=cpu", "stages=[table4]", "logger=none", wave,
           f"runs_root={tmp_path}/logs/multiruns/cpu", f"results_dir={tmp_path}/results", "fetch_data=false",
           "overrides=[" + ",".join(f"'{o}'" for o in env_over) + "]"]
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "DATA_ROOT": str(fixture_root)})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    m = json.loads((tmp_path / "logs/multiruns/cpu/imdb/fastformer/seed2/metrics.json").read_text())
    assert m["preset"] == "cpu" and m["group_by_length"] and m["cpu_dropout"] == "fast" and m["threads"] == 1
    assert m["cpu_heap"] == (platform.system() == "Linux" and platform.libc_ver()[0] == "glibc")
    assert m["test_items"]["n"] == m["data_info"]["sizes"]["test"]
    table = (tmp_path / "results" / "table4_classification_cpu.md").read_text()
    assert table.startswith("# Table 4: text classification (preset: cpu)")
    imdb = table.split("## IMDB")[1].split("## MIND")[0]
    assert "Δ vs Transformer [95% CI]" in imdb and "| Fastformer | " in imdb
    fast_row = next(line for line in imdb.splitlines() if line.startswith("| Fastformer | "))
    assert re.search(r"[+-]\d+\.\d\d \[[+-]\d+\.\d\d, [+-]\d+\.\d\d\]", fast_row) and "| 2 |" in fast_row
    assert "**IMDB:** resolved (95% interval excludes 0):" in table and "## What is resolved" in table
    assert "Not yet judged, fewer than 3 seeds" in table  # 2 seeds per row: intervals shown, no verdict
