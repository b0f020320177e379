"""The ablations table and figure mark cells at the majority class of their split (a model that predicts one class):
a "†" beside the accuracy with a footnote, a hatched grey bar with its legend entry; other cells stay unmarked."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from fastformer.results import ablations
from fastformer.results.common import Cell


def _run(root: Path, name: str, dataset: str, row: str, seed: int, acc: float, majority: float) -> None:
    d = root / name / f"seed{seed}"
    d.mkdir(parents=True)
    mixer = "pooling_baseline" if row == "pooling_baseline" else "fastformer"
    (d / "metrics.json").write_text(json.dumps({
        "task": "classification", "dataset": dataset, "mixer": mixer, "row": row, "seed": seed,
        "experiment": name, "params": 100, "device": "CPU (test)",
        "test": {"acc": acc, "macro_f1": acc / 3, "majority_acc": majority},
        "baselines": {"majority_acc": majority, "majority_macro_f1": 15.0}}))


def _row(md: str, section: str, name: str) -> list[str]:
    text = md.split(f"## {section}")[1].split("\n## ")[0]
    line = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def test_degenerate_rule():
    assert ablations.degenerate(Cell([62.8]), [62.8]) and ablations.degenerate(Cell([63.2]), [62.8])
    assert not ablations.degenerate(Cell([63.5]), [62.8])  # n = 1: 0.5 points
    assert ablations.degenerate(Cell([61.0, 65.0]), [62.8])  # within the seed std (2.83)
    assert not ablations.degenerate(Cell([70.0, 72.0]), [62.8]) and not ablations.degenerate(Cell([62.8]), [])
    assert not ablations.degenerate(None, [62.8]) and not ablations.degenerate(Cell(), [62.8])


def test_ablations_mark_cells_at_the_majority_class(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    for seed in (1, 2):  # Amazon sits at its majority class (62.80%), IMDB learns (majority 30.00%)
        _run(runs, "amazon/fastformer", "amazon", "fastformer", seed, 62.8, 62.8)
        _run(runs, "amazon/sharing_qv", "amazon", "sharing_qv", seed, 62.6 + 0.4 * (seed - 1), 62.8)
        _run(runs, "amazon/pooling_baseline", "amazon", "pooling_baseline", seed, 66.0 + seed, 62.8)
        _run(runs, "imdb/fastformer", "imdb", "fastformer", seed, 40.0 + seed, 30.0)
        _run(runs, "imdb/pooling_baseline", "imdb", "pooling_baseline", seed, 30.0, 30.0)
    md = ablations.build(runs, out, "quick").read_text()

    fig4 = "Figure 4: parameter sharing"
    row = _row(md, fig4, "QV + layer-wise")  # Amazon Acc (ours), paper, MF, paper, IMDB Acc (ours), ...
    assert row[1] == "62.80 ± 0.00 †" and row[5] == "41.50 ± 0.71"  # the degenerate cell only
    assert _row(md, fig4, "Query-Value")[1] == "62.80 ± 0.28 †"
    assert _row(md, fig4, "w/o sharing")[1] == "—"  # not run: no mark
    footnote = ("† at majority class (degenerate: the model predicts one class): mean test accuracy within max(seed "
                "std, 0.5) points of a majority-class accuracy of the split")
    for section in (fig4, "Figure 3", "Redundancy"):
        text = md.split(f"## {section}")[1].split("\n## ")[0]
        assert footnote in text and "Amazon 62.80%" in text and "IMDB 30.00%" in text, section
    red = "Redundancy"
    assert _row(md, red, "pooling baseline mixer")[1:5] == ["67.50 ± 0.71", "+4.70", "100", "30.00 ± 0.00 †"]
    assert _row(md, red, "Fastformer (full, paper form)")[4] == "41.50 ± 0.71"
    assert md.count("†") == md.count("62.80 ± 0.00 †") + 1 + 1 + 3  # marked cells + 3 footnotes, nothing else

    with open(out / "ablations.csv", newline="") as f:
        table = list(csv.DictReader(f))
    deg = {(r["figure"], r["dataset"], r["row"]) for r in table if r["degenerate"] == "1"}
    assert ("Figure 4", "amazon", "full") in deg and ("redundancy", "imdb", "pooling_baseline") in deg
    assert ("Figure 4", "imdb", "full") not in deg and ("redundancy", "amazon", "pooling_baseline") not in deg
    assert (out / "ablations.png").stat().st_size > 0


def test_no_mark_without_degenerate_cells(tmp_path):
    """Tables without a cell at the majority class read as before: no mark, no footnote."""
    runs, out = tmp_path / "runs", tmp_path / "out"
    _run(runs, "imdb/fastformer", "imdb", "fastformer", 1, 45.0, 30.0)
    md = ablations.build(runs, out, "quick").read_text()
    assert "†" not in md and "degenerate" not in md and _row(md, "Figure 3", "Element-wise product")[5] == "45.00"
