"""Every bad input ends a single run of scripts/train.py with exit code 2 and one [ERROR] line naming the file or key,
what was found there and the fix -- no traceback -- and, once the run has started, its failed.json (issue #20).

The cases run end to end in subprocesses, a few at a time (``_run_all``), on tiny files derived from the text fixture
(fastformer/data/fixtures.py ``write_text_tables``). Two concurrent launches on one run dir: the second stops at once,
naming the first (pid, start time), and writes nothing there.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN = [sys.executable, str(ROOT / "scripts" / "train.py")]
TINY = ["logger=none", "trainer.progress_bar=false", "model.d_model=32", "model.n_heads=4", "data.max_len=32",
        "trainer.max_epochs=1", "trainer.threads=1"]
ENV = {**os.environ, "PROJECT_ROOT": str(ROOT), "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}

# case -> (file to write under data/text/ (name, bytes-producing function of the good jsonl) or None, overrides,
#          phrases the one ERROR line must hold, whether failed.json is written)
CASES: dict[str, tuple] = {
    "latin1": (("latin1.jsonl", lambda good: _latin1(good)), [],
               ["latin1.jsonl: 44 of 60 rows (73.3%) would be dropped as bad (undecodable=44)",
                "data.max_skip_fraction=0.01", "data.encoding=latin-1"], True),
    "bad_encoding_name": (None, ["data.encoding=klingon"], ["data.encoding='klingon' is not a text encoding"], True),
    "gz_not_gzip": (("data.jsonl.gz", lambda good: good), [],
                    ["data.jsonl.gz: named .gz but not gzip-compressed", "JSON lines with fields ['label', 'text']",
                     "rename it without .gz"], True),
    "gz_truncated": (("cut.jsonl.gz", lambda good: gzip.compress(good * 20)[:3000]), [],
                     ["cut.jsonl.gz: the gzip stream is truncated or corrupt", "compress the file again"], True),
    "empty": (("empty.jsonl", lambda good: b""), [], ["empty.jsonl: the file is empty (0 bytes)"], True),
    "wrong_fields": (("fields.jsonl", lambda good: _renamed(good)), [],
                     ["fields.jsonl: no record has the field data.text_field='text'",
                      "the file's fields are ['body', 'stars']", "set data.text_field to one of them"], True),
    "one_class": (("one_class.jsonl", lambda good: _relabel(good)), [],
                  ["one_class.jsonl: all 60 valid rows have the same label 'positive'", "data.label_field"], True),
    "one_row": (("one_row.jsonl", lambda good: good.splitlines(keepends=True)[0]), [],
                ["one_row.jsonl: only 1 valid row", "needs at least 10 rows"], True),
    "binary": (("garbage.jsonl", lambda good: random.Random(0).randbytes(4000)), [],
               ["garbage.jsonl: 0 records", "binary data, not text"], True),
    "csv_as_jsonl": (("table.jsonl", lambda good: b""), [],  # filled with the fixture's CSV below
                     ["table.jsonl: 0 records (61 malformed lines)", "CSV with columns ['text', 'label']",
                      "set data.format=csv"], True),
    "corrupt_checkpoint": (None, [], ["checkpoints/last.pt: cannot resume from this checkpoint",
                                      "delete it or trainer.resume=false"], True),
    "nan_loss": (None, ["optimizer.lr=1e30", "trainer.max_epochs=3"], ["lower optimizer.lr"], True),
    "diverging_loss": (None, ["optimizer.lr=10", "trainer.max_epochs=3"],
                       ["training diverged: mean loss", "> 10 x max(first step's loss", "lower optimizer.lr"], True),
    "optimizer_type": (None, ["optimizer.lr=fast"],
                       ["config key optimizer.lr='fast' must be a number", "before any work"], False),
    "mind_download": (None, ["data=mind_topics", "data.download=true",
                             "data.urls.MINDlarge_train=file:///nonexistent/MINDlarge_train.zip"],
                      ["could not download file:///nonexistent/MINDlarge_train.zip", "https://msnews.github.io/",
                       "MINDlarge_train.zip, MINDlarge_dev.zip, MINDlarge_test.zip", "/mind/"], True),
}


def _lines(good: bytes) -> list[dict]:
    return [json.loads(line) for line in good.splitlines()]


def _latin1(good: bytes) -> bytes:
    """The issue's case: a Latin-1 file, 73% of whose rows hold a non-ASCII character."""
    rows = _lines(good)
    for i, r in enumerate(rows):
        if i % 15 < 11:
            r["text"] += " caf\u00e9 d\u00e9j\u00e0 vu"
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("latin-1")


def _renamed(good: bytes) -> bytes:
    return "".join(json.dumps({"body": r["text"], "stars": r["label"]}) + "\n" for r in _lines(good)).encode()


def _relabel(good: bytes) -> bytes:
    return "".join(json.dumps({**r, "label": "positive"}) + "\n" for r in _lines(good)).encode()


def _run(args: list[str], timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run([*TRAIN, *args], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    """Every case's CompletedProcess and run dir, run 3 at a time."""
    from fastformer.data.fixtures import write_text_tables

    base = tmp_path_factory.mktemp("bad_input")
    tables = write_text_tables(base / "data", n_per_class=20)
    good = tables["jsonl"].read_bytes()
    jobs = {}
    for name, (file, overrides, _, _) in CASES.items():
        run_dir = base / "runs" / name
        args = ["data=text_jsonl", f"data.root={base / 'data'}", f"paths.cache_dir={base / 'cache' / name}",
                f"hydra.run.dir={run_dir}", *TINY]
        if file is not None:
            path = base / "data" / "text" / file[0]
            path.write_bytes(tables["csv"].read_bytes() if name == "csv_as_jsonl" else file[1](good))
            args.append(f"data.path=text/{file[0]}")
        if name == "corrupt_checkpoint":
            (run_dir / "checkpoints").mkdir(parents=True)
            (run_dir / "checkpoints" / "last.pt").write_bytes(b"PK\x03\x04" + bytes(200))  # a zip cut short
        if name == "mind_download":
            (base / "empty_root").mkdir()
            args = [a for a in args if not a.startswith("data.root=")] + [f"data.root={base / 'empty_root'}"]
        jobs[name] = ([*args, *overrides], run_dir)
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(_run, args) for name, (args, _) in jobs.items()}
        return {name: (f.result(), jobs[name][1]) for name, f in futures.items()}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_line_and_exit_2(outcomes, case):
    r, run_dir = outcomes[case]
    out = r.stdout + r.stderr
    assert r.returncode == 2, out[-3000:]
    assert "Traceback" not in out, out[-3000:]
    errors = [ln for ln in out.splitlines() if "[ERROR]" in ln]
    assert len(errors) == 1, out[-3000:]
    for phrase in CASES[case][2]:
        assert phrase in errors[0], (phrase, errors[0])
    failed = run_dir / "failed.json"
    assert failed.exists() == CASES[case][3], errors[0]
    if failed.exists():
        assert json.loads(failed.read_text())["error"].split(": ", 1)[1][:200] in errors[0]


def test_latin1_file_loads_with_its_encoding(tmp_path):
    from fastformer.data.classification import load_classification
    from fastformer.data.fixtures import write_text_tables

    good = write_text_tables(tmp_path, n_per_class=20)["jsonl"].read_bytes()
    (tmp_path / "latin1.jsonl").write_bytes(_latin1(good))
    cfg = {"name": "t", "loader": "text", "root": str(tmp_path), "path": "latin1.jsonl", "text_field": "text",
           "label_field": "label", "cache_dir": str(tmp_path / "c"), "encoding": "latin-1"}
    ds = load_classification(cfg)
    assert ds.info["available_rows"] == 60 and not ds.info.get("skipped")
    assert any("café" in " ".join(ds.vocab.decode(ids)) for ids, _ in ds.train)


def test_two_runs_in_one_run_dir(tmp_path):
    """A second launch on a run dir in use stops at once (exit 2, one line naming the first run's pid and start time)
    and changes nothing there; the first run goes on."""
    from fastformer.data.fixtures import write_text_tables

    write_text_tables(tmp_path / "data", n_per_class=20)
    run_dir = tmp_path / "run"
    args = ["data=text_jsonl", f"data.root={tmp_path / 'data'}", f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.run.dir={run_dir}", *TINY]
    first = subprocess.Popen([*TRAIN, *args, "trainer.max_epochs=1000"], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # the first run holds the lock and Hydra has written its config
            lock = run_dir / ".lock"
            config = run_dir / ".hydra" / "overrides.yaml"  # the last file Hydra writes before the run starts
            if lock.exists() and lock.read_text().strip() and config.exists() and "max_epochs=1000" in \
                    config.read_text():
                break
            assert first.poll() is None, "the first run ended early"
            time.sleep(0.2)
        holder = json.loads((run_dir / ".lock").read_text())
        assert holder["pid"] == first.pid
        before = {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()}
        second = _run([*args, "seed=2"], timeout=120)
        out = second.stdout + second.stderr
        assert second.returncode == 2 and "Traceback" not in out, out[-3000:]
        errors = [ln for ln in out.splitlines() if "[ERROR]" in ln]
        assert len(errors) == 1, out
        assert f"run dir {run_dir} is in use by another run (pid {first.pid}, started {holder['started']}" \
            in errors[0] and "hydra.run.dir=<new dir>" in errors[0], errors[0]
        assert {p.name: p.read_text() for p in (run_dir / ".hydra").iterdir()} == before  # seed 2 wrote nothing
        assert not (run_dir / "failed.json").exists() and first.poll() is None
    finally:
        first.terminate()
        first.wait(timeout=60)


def test_default_run_dir_is_unique_per_launch():
    """The default single-run dir has the seed and the time to the microsecond (two launches in one second differ)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["experiment=imdb/fastformer", "seed=3"], return_hydra_config=True)
    run_dir = OmegaConf.select(cfg, "hydra.run.dir")
    assert re.search(r"/runs/imdb/fastformer/\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d-\d{6}_seed3$", run_dir), run_dir
    sweep = OmegaConf.to_container(OmegaConf.load(ROOT / "configs" / "hydra" / "default.yaml"))["sweep"]
    assert sweep["subdir"] == "${experiment_name}/${hydra.job.override_dirname}/seed${seed}"  # sweep layout as before


def test_lock_is_released_and_reentrant(tmp_path):
    from fastformer.train.rundir import RunDirBusyError, lock_run_dir

    lock = lock_run_dir(tmp_path)
    assert lock_run_dir(tmp_path).path == lock.path  # this process already holds it: a borrowed handle
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\nfrom fastformer.train.rundir import lock_run_dir\n"
            f"lock_run_dir({str(tmp_path)!r})")
    busy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert busy.returncode != 0 and RunDirBusyError.__name__ in busy.stderr and str(os.getpid()) in busy.stderr
    lock.release()
    free = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert free.returncode == 0, free.stderr  # a lock file left by an ended run is taken at once
