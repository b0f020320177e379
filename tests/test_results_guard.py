"""A missing data root or an emptier sweep never destroys what results/ shows.

* `scripts/reproduce.py` with an empty data root stops within seconds with one message per missing dataset (URL and
  exact path), launches no run and leaves an existing results file byte-identical;
* a table rebuild with fewer finished cells than the table it would replace is refused (nothing written, exit 1)
  unless `scripts/make_tables.py --force`; failed cells still show as "failed" next to finished ones.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fastformer.results.common import TableRegressionError, count_finished, write_outputs
from tests.test_tables import fake_run

ROOT = Path(__file__).resolve().parents[1]


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _make_tables(runs: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "make_tables.py"), "--runs", str(runs), "--out",
                           str(out), "--tables", "table4", *extra], capture_output=True, text=True, cwd=ROOT)


def test_count_finished():
    header = ["dataset", "model", "acc_mean", "acc_std", "n_seeds"]
    assert count_finished(header, [["a", "x", 60.0, 0.0, 1], ["a", "y", "", "", 0], ["a", "z", "nan", "", 0]]) == 1
    assert count_finished(["mixer", "status"], [["f", "ok"], ["t", "oom"]]) == 1


def test_write_outputs_refuses_fewer_finished_cells(tmp_path, monkeypatch):
    stem = tmp_path / "t"
    write_outputs(stem, "# two", ["model", "acc_mean"], [["a", 1.0], ["b", 2.0]])
    before = _digest(tmp_path)
    with pytest.raises(TableRegressionError, match="2 finished cell"):
        write_outputs(stem, "# one", ["model", "acc_mean"], [["a", 1.0], ["b", ""]])
    assert _digest(tmp_path) == before
    write_outputs(stem, "# two again", ["model", "acc_mean"], [["a", 3.0], ["b", 4.0]])  # same count: replaced
    assert stem.with_suffix(".md").read_text() == "# two again\n"
    monkeypatch.setenv("FASTFORMER_FORCE_TABLES", "1")
    write_outputs(stem, "# none", ["model", "acc_mean"], [["a", ""], ["b", ""]])
    assert stem.with_suffix(".md").read_text() == "# none\n"


def test_table_rebuild_with_fewer_finished_cells_needs_force(tmp_path):
    full, partial, out = tmp_path / "full", tmp_path / "partial", tmp_path / "res"
    for exp in ("amazon/fastformer", "amazon/transformer", "imdb/fastformer"):
        fake_run(full, exp, 1, 60.0)
    fake_run(partial, "amazon/fastformer", 1, 61.0)
    fake_run(partial, "amazon/transformer", 1, None, error="RuntimeError: boom")
    r = _make_tables(full, out)
    assert r.returncode == 0, r.stderr
    before = _digest(out)
    r = _make_tables(partial, out)
    assert r.returncode == 1 and "kept" in r.stderr and "--force" in r.stderr, r.stderr
    assert _digest(out) == before
    r = _make_tables(partial, out, "--force")
    assert r.returncode == 0, r.stderr
    amazon = (out / "table4_classification.md").read_text().split("## Amazon")[1].split("## IMDB")[0]
    assert next(ln for ln in amazon.splitlines() if ln.startswith("| Transformer |")).count("failed") == 2
    assert next(ln for ln in amazon.splitlines() if ln.startswith("| Fastformer |")).startswith("| Fastformer | 61.00")


def test_reproduce_with_empty_data_root_stops_fast_and_keeps_results(tmp_path):
    empty, res, runs = tmp_path / "data", tmp_path / "res", tmp_path / "runs"
    empty.mkdir()
    res.mkdir()
    for suffix in (".md", ".csv"):
        shutil.copy(ROOT / "results" / f"table4_classification{suffix}", res)
    before, before_repo = _digest(res), _digest(ROOT / "results")
    env = {**os.environ, "DATA_ROOT": str(empty), "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "reproduce.py"), f"results_dir={res}",
                        f"runs_root={runs}", "logger=none", "hydra.run.dir=" + str(tmp_path / "hydra"),
                        "fetch_data=false"],  # only look (a CI machine online must not download GBs here)
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    elapsed = time.perf_counter() - t0
    assert r.returncode != 0, r.stdout + r.stderr
    assert elapsed < 60, elapsed
    out = r.stdout
    assert "nothing launched" in out, out + r.stderr
    for name, url, dest in (("imdb", "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
                             empty / "imdb" / "aclImdb_v1.tar.gz"),
                            ("amazon", "reviews_Electronics_5.json.gz", empty / "amazon"),
                            ("cnndm", "huggingface.co/datasets/abisee/cnn_dailymail", empty / "cnn_dailymail"),
                            ("pubmed", "ccdv/pubmed-summarization", empty / "pubmed")):
        line = next((ln for ln in out.splitlines() if f"MISSING {name}:" in ln), "")
        assert url in line and str(dest.resolve()) in line, (name, out)
        assert out.count(f"MISSING {name}:") == 1  # one message per dataset, not one per run or stage
    assert "[reproduce] table4:" not in out  # no sweep launched
    assert not runs.exists() or not any(runs.rglob("*.json"))
    assert _digest(res) == before
    assert _digest(ROOT / "results") == before_repo
