"""W&B (offline) shows the paper: a run's summary holds the best epoch's val metrics, test metrics, params, tokens/s,
peak memory and device; epoch curves are on train/epoch; a resumed run continues the same W&B run id; the tables run
holds every results table and figure. Checked by reading the offline run files (no network)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from wandb_offline import read_offline_run

from fastformer.train.logging import RUN_ID_FILE, summary_from_metrics

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train import train  # noqa: E402

TINY = ["trainer.progress_bar=false", "model.d_model=32", "model.n_heads=4", "data.max_len=64", "task.batch_size=16",
        "logger=wandb", "experiment=amazon/fastformer", "trainer.limit_train_batches=2", "data.max_eval=32"]


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def _runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


def test_summary_from_metrics():
    s = summary_from_metrics({"val": {"acc": 70.0}, "test": {"acc": 65.0}, "params": 10, "train_tokens_per_s": 5.0,
                              "peak_mem_mb": 99.0, "device": "CPU", "best_epoch": 2})
    assert s == {"val/acc": 70.0, "test/acc": 65.0, "params": 10, "perf/tokens_per_s": 5.0, "perf/peak_mem_mb": 99.0,
                 "device": "CPU", "best_epoch": 2}


def test_run_summary_is_the_best_epoch_and_resume_keeps_the_run_id(compose_cfg, fixture_root, tmp_path, offline):
    over = [f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache", *TINY, "trainer.max_epochs=3",
            "optimizer.lr=3e-3"]
    cfg = compose_cfg(over)
    run_dir = tmp_path / "wb"
    stopped = train(compose_cfg([*over, "trainer.stop_after_epochs=1"]), str(run_dir))
    assert stopped == {"stopped_at_epoch": 1}
    run_id = (run_dir / RUN_ID_FILE).read_text().strip()
    metrics = train(cfg, str(run_dir))  # resumes from the checkpoint: epochs 2-3
    parts = _runs(run_dir)
    # both parts carry the kept id (their folder names get a "-1" suffix when both start in the same second)
    assert len(parts) == 2 and all(read_offline_run(p)["run"]["id"] == run_id for p in parts)
    rec = read_offline_run(parts[-1])
    assert rec["run"]["id"] == run_id and rec["run"]["group"] == "amazon/fastformer"
    assert "fastformer" in rec["run"]["tags"] and "amazon" in rec["run"]["tags"]
    s = rec["summary"]
    for k, v in metrics["val"].items():  # the best epoch's validation metrics (metrics.json), not the last epoch's
        assert s[f"val/{k}"] == pytest.approx(v), k
    for k, v in metrics["test"].items():
        assert s[f"test/{k}"] == pytest.approx(v), k
    assert s["params"] == metrics["params"] and s["best_epoch"] == metrics["best_epoch"]
    assert s["perf/tokens_per_s"] == pytest.approx(metrics["train_tokens_per_s"])
    assert s["perf/peak_mem_mb"] == pytest.approx(metrics["peak_mem_mb"]) and s["device"] == metrics["device"]
    assert rec["metrics"].get("val/*") == "train/epoch" and rec["metrics"].get("perf/*") == "train/epoch"
    epochs = [h["train/epoch"] for h in rec["history"] if "val/acc" in h]
    assert epochs == [2, 3]  # the resumed part logs epochs 2 and 3 on the epoch axis
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == metrics["test"]


def test_artifacts_switch_logs_metrics_and_best_checkpoint(compose_cfg, fixture_root, tmp_path, offline):
    """logger.artifacts=true: metrics.json and checkpoints/best.pt as artifacts of the run; off by default."""
    over = [f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache", *TINY, "trainer.max_epochs=1"]
    train(compose_cfg([*over, "logger.artifacts=true"]), str(tmp_path / "on"))
    (part,) = _runs(tmp_path / "on")
    arts = {a["type"]: a for a in read_offline_run(part)["artifacts"]}
    assert set(arts) == {"metrics", "model"}, arts
    assert arts["metrics"]["name"] == "metrics-amazon-fastformer-seed1" and arts["metrics"]["files"] == ["metrics.json"]
    assert arts["model"]["files"] == ["best.pt"] and arts["model"]["metadata"] == {"best_epoch": 1}
    train(compose_cfg(over), str(tmp_path / "off"))
    (part,) = _runs(tmp_path / "off")
    assert read_offline_run(part)["artifacts"] == []


def test_tables_run_holds_every_table_and_figure(tmp_path, offline):
    import pandas as pd

    from wandb_tables import log_tables

    res = tmp_path / "results"
    res.mkdir()
    pd.DataFrame({"model": ["fastformer", "transformer"], "acc_mean": [66.0, 65.5]}).to_csv(res / "t4.csv",
                                                                                             index=False)
    (res / "t4.md").write_text("# Table 4\n| Model | Acc |\n")
    (res / "kernels.md").write_text("# kernels only as markdown\n\n## Per kernel\n\n| kernel | regs |\n|---|---|\n"
                                    "| `_pool_fwd` | 96 |\n| `_pool_bwd` | 128 |\n")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([1, 2], [3, 4])
    fig.savefig(res / "efficiency.png")
    plt.close(fig)
    logged = log_tables(res, "quick", tmp_path / "wb")
    assert logged == {"tables": ["t4", "kernels"], "figures": ["efficiency"], "skipped": []}
    (run,) = sorted((tmp_path / "wb" / "wandb").glob("offline-run-*-tables-quick"))
    rec = read_offline_run(run)
    assert rec["run"]["id"] == "tables-quick" and rec["run"]["job_type"] == "tables"
    row = next(h for h in rec["history"] if "tables/t4" in h)
    assert row["tables/t4"]["_type"] == "table-file" and row["figures/efficiency"]["_type"] == "image-file"
    table = json.loads((run / "files" / row["tables/t4"]["path"]).read_text())
    assert table["columns"] == ["model", "acc_mean"] and table["data"] == [["fastformer", 66.0], ["transformer", 65.5]]
    assert (run / "files" / row["figures/efficiency"]["path"]).is_file()
    kernels = json.loads((run / "files" / row["tables/kernels"]["path"]).read_text())  # a markdown-only table
    assert kernels["columns"] == ["kernel", "regs"]
    assert kernels["data"] == [["`_pool_fwd`", "96"], ["`_pool_bwd`", "128"]]
    (art,) = [a for a in rec["artifacts"] if a["type"] == "results"]  # (each logged wandb.Table is a run_table too)
    assert art["name"] == "results-quick"
    assert sorted(art["files"]) == ["efficiency.png", "kernels.md", "t4.csv", "t4.md"]
    assert rec["summary"]["markdown/t4"].startswith("# Table 4")
    assert rec["summary"]["markdown/kernels"].startswith("# kernels")


def test_tables_run_leaves_out_another_presets_tables(tmp_path, offline):
    """results/ holding quick tables: a `paper` tables run logs only the preset-free ones (efficiency) and names the
    rest; the CLI refuses a preset no table was generated for."""
    import subprocess

    import pandas as pd

    from wandb_tables import log_tables, table_preset

    res = tmp_path / "results"
    res.mkdir()
    for stem, title in (("table4_classification", "# Table 4: text classification (preset: quick)"),
                        ("probes", "# Probes: accuracy vs difficulty (preset: quick)"),
                        ("efficiency", "# Efficiency: time per mixer layer (paper Figure 2)")):
        pd.DataFrame({"model": ["fastformer"], "acc_mean": [1.0]}).to_csv(res / f"{stem}.csv", index=False)
        (res / f"{stem}.md").write_text(title + "\n")
    for stem in ("probes", "probes_interaction", "efficiency"):
        (res / f"{stem}.png").write_bytes((ROOT / "results" / "efficiency.png").read_bytes())
    assert table_preset(res / "probes.md") == "quick" and table_preset(res / "efficiency.md") is None
    logged = log_tables(res, "paper", tmp_path / "wb")
    assert logged == {"tables": ["efficiency"], "figures": ["efficiency"],
                      "skipped": ["probes", "probes_interaction", "table4_classification"]}
    quick = log_tables(res, "quick", tmp_path / "wbq")
    assert quick["tables"] == ["efficiency", "probes", "table4_classification"] and not quick["skipped"]
    assert quick["figures"] == ["efficiency", "probes", "probes_interaction"]
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "wandb_tables.py"), "--preset", "paper", "--results",
                        str(res), "--dir", str(tmp_path / "wbcli")], capture_output=True, text=True)
    assert r.returncode == 2 and "no table" in r.stderr and "'quick'" in r.stderr, r.stderr
