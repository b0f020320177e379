"""Token interaction (fastformer/analysis/interaction.py) on trained classification runs, and the probes table's
"Token interaction on real inputs (IMDB classifier, quick preset)" section built from them: tiny runs on the fixture
IMDB data, real test items through the task's collate function, cut to max_tokens."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from train import train  # noqa: E402

TINY = ["logger=none", "trainer.progress_bar=false", "model.d_model=16", "model.n_heads=2", "data.max_len=48",
        "task.batch_size=16", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "data.max_eval=8"]


def _train(compose_cfg, fixture_root, tmp_path, experiment: str) -> Path:
    cfg = compose_cfg([f"experiment={experiment}", f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache",
                       *TINY])
    run_dir = tmp_path / "runs" / cfg.experiment_name / "seed1"  # the run-dir key, as the sweeps lay it out
    run_dir.mkdir(parents=True)
    (run_dir / ".hydra").mkdir()
    OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")  # what Hydra writes into every job dir
    train(cfg, str(run_dir))
    return run_dir


def test_interaction_of_classification_runs_and_the_imdb_section(compose_cfg, fixture_root, tmp_path):
    from fastformer.analysis.interaction import run_interaction
    from fastformer.results import probes

    empty = probes.build(tmp_path / "none", tmp_path / "out0", "quick").read_text()
    section = empty.split("## Token interaction on real inputs (IMDB classifier, quick preset)")[1]
    assert probes.IMDB_COMMAND in section and "make_tables.py --tables probes" in section

    ff = _train(compose_cfg, fixture_root, tmp_path, "imdb/fastformer")
    _train(compose_cfg, fixture_root, tmp_path, "imdb/pooling_baseline")
    nockpt = tmp_path / "runs" / "imdb" / "transformer" / "seed1"  # finished elsewhere: metrics only
    nockpt.mkdir(parents=True)
    rec = json.loads((ff / "metrics.json").read_text())
    (nockpt / "metrics.json").write_text(json.dumps({**rec, "mixer": "transformer", "row": "transformer"}))
    abl = tmp_path / "runs" / "imdb" / "sharing_qv" / "seed1"  # an ablation row: not a mixer row
    abl.mkdir(parents=True)
    (abl / "metrics.json").write_text(json.dumps({**rec, "row": "sharing_qv"}))

    out = run_interaction(ff, n_seqs=3, max_tokens=12)
    assert out["task"] == "classification" and out["dataset"] == "imdb" and out["n_seqs"] == 3
    assert out["n_tokens"] <= 12 and out["max_tokens"] == 12 and out["n_truncated"] >= 1
    assert 1 <= out["offdiag_rank90"] <= out["offdiag_rank99"] <= out["n_tokens"] and 0 < out["offdiag_share"] < 1
    assert len(out["mean_J"]) == out["n_tokens"] or out["mean_J_n"] < 3
    assert json.loads((ff / "interaction.json").read_text()) == out  # cached
    assert run_interaction(ff) == out  # a cached measurement is returned as it is

    md = probes.build(tmp_path / "runs", tmp_path / "out", "quick").read_text()
    section = md.split("## Token interaction on real inputs (IMDB classifier, quick preset)")[1].split("\n## ")[0]
    rows = {line.split("|")[1].strip(): line for line in section.splitlines() if line.startswith("| ")}
    assert set(rows) == {"Mixer", "fastformer", "pooling_baseline"}, rows
    assert f"| {out['n_tokens']:.1f} | {out['rank90']:.1f} |" in rows["fastformer"]
    assert f"first {probes.IMDB_N_SEQS} test reviews, each cut to its first {probes.IMDB_MAX_TOKENS} tokens" in section
    assert "Measured with other settings (a cached interaction.json): fastformer (3 reviews, 12 tokens)." in section
    assert "Not measured (run without checkpoints/best.pt or interaction.json): transformer." in section
    pb = json.loads((tmp_path / "runs" / "imdb/pooling_baseline/seed1/interaction.json").read_text())
    assert pb["max_tokens"] == probes.IMDB_MAX_TOKENS and pb["n_seqs"] == min(probes.IMDB_N_SEQS, 8)
    assert (tmp_path / "out" / "probes_interaction_imdb.png").stat().st_size > 0
