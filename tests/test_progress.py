"""fastformer.utils.progress: a live tqdm bar on a terminal, plain milestone lines (no carriage-return frames) off one;
the one progress helper every module uses."""
from __future__ import annotations

import io
import re
from pathlib import Path

from fastformer.utils import progress

ROOT = Path(__file__).resolve().parents[1]


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_off_a_terminal_one_line_per_step(monkeypatch):
    monkeypatch.delenv("FASTFORMER_PROGRESS", raising=False)
    buf = io.StringIO()
    bar = progress(total=1000, desc="epoch 1/3", leave=False, file=buf)
    for i in range(1000):
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}")
        bar.update()
    bar.close()
    text = buf.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert len(lines) == 10, lines  # one per 10 %
    assert [int(re.search(r"(\d+)%", ln).group(1)) for ln in lines] == list(range(10, 101, 10))
    assert lines[-1].startswith("epoch 1/3: 100%") and "1000/1000" in lines[-1] and "loss=0.0010" in lines[-1]


def test_iterable_unknown_total_and_disable(monkeypatch):
    monkeypatch.delenv("FASTFORMER_PROGRESS", raising=False)
    buf = io.StringIO()
    assert sum(progress(range(5), desc="x", file=buf, step_pct=50)) == 10
    assert len(buf.getvalue().splitlines()) == 2
    buf = io.StringIO()
    with progress(desc="bytes", unit="B", file=buf, interval_s=3600) as bar:  # no total: time-limited lines
        for _ in range(100):
            bar.update(10)
    assert len(buf.getvalue().splitlines()) <= 1
    buf = io.StringIO()
    with progress(total=3, file=buf, disable=True) as bar:
        bar.update(3)
    assert buf.getvalue() == ""


def test_terminal_gets_tqdm_and_env_override(monkeypatch):
    monkeypatch.delenv("FASTFORMER_PROGRESS", raising=False)
    tty = Tty()
    with progress(total=3, desc="t", file=tty) as bar:
        for _ in range(3):
            bar.update()
    assert "\r" in tty.getvalue()  # a live bar redraws in place
    monkeypatch.setenv("FASTFORMER_PROGRESS", "off")
    buf = io.StringIO()
    with progress(total=3, file=buf) as bar:
        bar.update(3)
    assert buf.getvalue() == ""


def test_no_module_uses_tqdm_directly():
    offenders = [str(p.relative_to(ROOT)) for d in ("fastformer", "scripts") for p in (ROOT / d).rglob("*.py")
                 if p.name != "utils.py" and re.search(r"^\s*(from tqdm|import tqdm)", p.read_text(), re.M)]
    assert not offenders, f"use fastformer.utils.progress instead of tqdm in {offenders}"


def test_library_progress_bars_off_a_terminal(tmp_path, monkeypatch, capfd):
    """A Hub download off a terminal (datasets.load_dataset + to_parquet on a local Parquet repo): no tqdm frame
    reaches stderr, one line per step does, and the libraries' bars are switched back on afterwards."""
    import datasets
    import huggingface_hub.utils as hub

    from fastformer.data import summarization
    from tests.test_data_catalog import _hub_like_repo, _sample_records

    monkeypatch.setenv("FASTFORMER_PROGRESS", "log")
    repo = tmp_path / "hub" / "pubmed"
    _hub_like_repo(repo, "document", _sample_records("pubmed", 10))
    monkeypatch.setitem(summarization.HF_DATASETS, "pubmed", (str(repo), "document"))
    summarization.download_hf("pubmed", tmp_path / "data" / "pubmed")
    err = capfd.readouterr().err
    assert "\r" not in err and "%|" not in err, err
    assert "downloading Hugging Face" in err and "train.parquet (6 rows)" in err, err
    assert not datasets.are_progress_bars_disabled() and not hub.are_progress_bars_disabled()
