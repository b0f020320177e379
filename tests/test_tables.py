"""Table machinery on fabricated run outputs: mean ± std over seeds, paper value and delta beside, missing cells
shown as "—" and failed runs as "failed" (never as 0), atomic md + csv outputs."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fastformer.results.common import Cell, group, load_runs

ROOT = Path(__file__).resolve().parents[1]


def fake_run(root: Path, exp: str, seed: int, acc: float | None, error: str | None = None) -> None:
    d = root / exp / f"seed{seed}"
    d.mkdir(parents=True)
    base = {"task": "classification", "experiment": exp, "dataset": exp.split("/")[0], "mixer": exp.split("/")[1],
            "row": exp.split("/")[1], "seed": seed}
    if error:
        (d / "failed.json").write_text(json.dumps({**base, "error": error}))
    else:
        (d / "metrics.json").write_text(json.dumps({
            **base, "test": {"acc": acc, "macro_f1": acc / 2, "majority_acc": 40.0}, "params": 1000,
            "train_tokens_per_s": 5000.0, "device": "CPU (test)", "torch": "2.x", "precision": "fp32",
            "git_sha": "abc", "data_info": {"data_used": "fixture amazon", "sizes": {"train": 10}},
            "baselines": {"majority_acc": 40.0, "majority_macro_f1": 11.4, "bow_logreg_acc": 55.5,
                          "bow_logreg_macro_f1": 30.25}}))


def test_cell_statistics():
    c = Cell([60.0, 62.0, 64.0])
    assert c.mean == 62.0 and abs(c.std - 2.0) < 1e-12 and c.fmt() == "62.00 ± 2.00"
    assert Cell().fmt() == "—" and Cell(failed=["x"]).fmt() == "failed"
    assert Cell([50.0], failed=["boom"]).fmt() == "50.00 (1 failed)"


def test_table4_from_fabricated_runs(tmp_path):
    runs = tmp_path / "runs"
    fake_run(runs, "amazon/fastformer", 1, 66.0)
    fake_run(runs, "amazon/fastformer", 2, 68.0)
    fake_run(runs, "amazon/transformer", 1, None, error="RuntimeError: out of memory")
    assert len(load_runs(runs, task="classification")) == 3
    cells = group(load_runs(runs), lambda r: r.get("experiment"), "test.acc")
    assert cells["amazon/fastformer"].n == 2 and cells["amazon/transformer"].failed
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tables.py"), "--runs", str(runs), "--out",
                          str(tmp_path / "res"), "--tables", "table4"], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    md = (tmp_path / "res" / "table4_classification.md").read_text()
    amazon = md.split("## Amazon")[1].split("## IMDB")[0]
    row = next(line for line in amazon.splitlines() if line.startswith("| Fastformer |"))
    assert "67.00 ± 1.41" in row and "66.13" in row and "+0.87" in row  # ours, paper, delta
    assert next(line for line in amazon.splitlines() if line.startswith("| Transformer |")).count("failed") == 2
    assert "| Linformer | — |" in amazon  # not run
    assert "| TF-IDF logistic regression (reference) | 55.50 |" in amazon
    assert "| Majority class of train (reference) | 40.00 |" in amazon
    assert "fixture amazon" in amazon and "quick" in md
    csv = (tmp_path / "res" / "table4_classification.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,model,acc_mean")
    assert any(line.startswith("amazon,fastformer,67.0") for line in csv)
