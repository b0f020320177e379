"""The ablations table judges Figures 3-4 and the redundancy rows the way Table 4 judges mixers: each variant's
difference from the full model with a 95% paired-bootstrap interval beside the paper's difference, a verdict per
dataset only once both rows have 3 seeds, and a Bonferroni-corrected line over every judged difference."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fastformer.results import ablations
from fastformer.utils import item_record


def _run(root: Path, row: str, seed: int, correct: np.ndarray) -> None:
    d = root / f"imdb/{row}/seed{seed}"
    d.mkdir(parents=True)
    acc = 100.0 * correct.mean()
    (d / "metrics.json").write_text(json.dumps({
        "task": "classification", "dataset": "imdb", "mixer": "fastformer", "row": row, "seed": seed,
        "experiment": f"imdb/{row}", "params": 100, "device": "CPU (test)",
        "test": {"acc": acc, "macro_f1": acc / 2, "majority_acc": 20.0},
        "test_items": item_record(np.arange(len(correct)), correct, len(correct))}))


def test_figure_differences_and_verdicts(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    easy = rng.random(n)
    runs, out = tmp_path / "runs", tmp_path / "out"
    for seed in (1, 2, 3):  # full model ~50%; concat clearly worse (~40%); add the same as full; sharing_qv 1 seed
        _run(runs, "fastformer", seed, easy < 0.50 + 0.005 * seed)
        _run(runs, "interaction_concat", seed, easy < 0.40 + 0.005 * seed)
        _run(runs, "interaction_add", seed, (easy + 0.02 * rng.random(n)) < 0.505 + 0.005 * seed)
    _run(runs, "sharing_qv", 1, easy < 0.5)
    md = ablations.build(runs, out, "cpu").read_text()
    section = md.split("## Figures 3-4 as differences from the full model")[1]
    concat = next(line for line in section.splitlines() if line.startswith("| Concatenation |"))
    cells = [c.strip() for c in concat.strip("|").split("|")]
    # Amazon and MIND have no runs: only IMDB's columns (Δ [CI], n, Δ paper) are shown
    assert cells[2:] == ["3 vs 3", "-1.66"] and cells[1].startswith("-10.")
    verdict = next(line for line in section.splitlines() if line.startswith("- **IMDB:**"))
    assert "resolved (95% interval excludes 0): Concatenation -10." in verdict
    assert "Not resolved: Add " in verdict
    assert "Not yet judged, fewer than 3 seeds in the row or the full model's: Query-Value (n = 1 vs 3)" in verdict
    assert "lies outside our interval (not reproduced at this scale): Concatenation (paper -1.66)" in verdict
    family = next(line for line in section.splitlines() if line.startswith("- **All datasets together, corrected"))
    assert "over the 2 judged differences: 97.50% intervals" in family
    assert "resolved: Concatenation on IMDB -10." in family
    assert "outside the corrected interval: Concatenation on IMDB -10." in family and "(paper -1.66)" in family


def test_no_difference_section_without_item_records(tmp_path):
    runs = tmp_path / "runs"
    d = runs / "imdb/fastformer/seed1"
    d.mkdir(parents=True)
    (d / "metrics.json").write_text(json.dumps({"task": "classification", "dataset": "imdb", "mixer": "fastformer",
                                                "row": "fastformer", "seed": 1, "test": {"acc": 45.0}}))
    assert "differences from the full model" not in ablations.build(runs, tmp_path / "out", "quick").read_text()
