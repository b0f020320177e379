"""`make data` (scripts/data.py, fastformer/data/catalog.py): one table of every dataset the tables use; missing ones
named with URL and exact path and a non-zero exit; the Hub sources load with the installed `datasets` version."""
from __future__ import annotations

import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from fastformer.data import summarization
from fastformer.data.catalog import DATASETS, check_dataset, stage_datasets
from tests.conftest import shared_data_root

ROOT = Path(__file__).resolve().parents[1]


def _data_py(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / "data.py"), "--no-fetch", *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_stage_datasets():
    assert stage_datasets("table4") == ["amazon", "imdb", "mind_topics"]
    assert stage_datasets("ablations") == ["amazon", "imdb", "mind_topics"]
    assert stage_datasets("table5") == ["mind"] and stage_datasets("table6") == ["cnndm", "pubmed"]
    assert stage_datasets("probes") == [] and stage_datasets("probes_recall") == []


def test_empty_root_names_every_missing_dataset(tmp_path):
    r = _data_py("--root", str(tmp_path), "--no-rows")
    assert r.returncode == 1, r.stdout + r.stderr
    out = r.stdout
    expect = {"imdb": ("https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz", "imdb/aclImdb_v1.tar.gz"),
              "amazon": ("reviews_Electronics_5.json.gz", "amazon/reviews_Electronics_5.json.gz"),
              "mind_topics": ("https://mind201910.blob.core.windows.net/release/MINDlarge_train.zip",
                              "mind/MINDlarge_train.zip"),
              "cnndm": ("https://huggingface.co/datasets/abisee/cnn_dailymail", "cnn_dailymail"),
              "pubmed": ("https://huggingface.co/datasets/ccdv/pubmed-summarization", "pubmed")}
    for name, (url, rel) in expect.items():
        line = next(ln for ln in out.splitlines() if ln.startswith(f"MISSING {name}:"))
        assert url in line and str(tmp_path.resolve() / rel) in line, line
    table = out.split("\nMISSING ")[0]
    for name in DATASETS:
        assert any(ln.split()[:1] == [name] for ln in table.splitlines()), (name, table)
    assert "mind " in table and "present" in table  # Table 5's synthetic MIND needs no file
    assert not any(tmp_path.iterdir())  # looking leaves nothing behind


@pytest.mark.data
def test_shared_root_all_present():
    root = shared_data_root()
    if root is None:
        pytest.skip("../shared/data not present")
    r = _data_py("--root", str(root))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines()[3:] if ln.strip()}
    assert set(rows) == set(DATASETS)
    for cols in rows.values():
        assert cols[2] == "present", cols
    assert rows["imdb"][3] == "50,000" and rows["amazon"][3] == "20,216" and rows["pubmed"][3] == "3,000"


def _sample_records(kind: str, n: int) -> list[dict]:
    """A few real records from ../shared/data when present (the formats of the Hub copies), else fabricated ones."""
    root = shared_data_root()
    if kind == "pubmed":
        src = root and root / "pubmed" / "sumpubmed_sample.jsonl.gz"
        if src and src.is_file():
            with gzip.open(src, "rt") as f:
                rows = map(json.loads, f.readlines()[:n])
                return [{"article": r["article"], "abstract": r["abstract"]} for r in rows]
        return [{"article": f"article {i} text about cells. more text.", "abstract": f"summary {i}."} for i in range(n)]
    src = root and root / "cnn_dailymail" / "validation_sample.csv.gz"
    if src and src.is_file():
        import pandas as pd
        return pd.read_csv(src, nrows=n)[["article", "highlights", "id"]].to_dict(orient="records")
    return [{"article": f"story {i} here. it goes on.", "highlights": f"story {i}.\nsecond line.", "id": str(i)}
            for i in range(n)]


def _hub_like_repo(path: Path, config: str, records: list[dict]) -> None:
    """A local dataset repo laid out as the Hub's Parquet repos: <config>/<split>-00000-of-00001.parquet + README."""
    import pandas as pd
    (path / config).mkdir(parents=True)
    cuts = {"train": records[:6], "validation": records[6:8], "test": records[8:10]}
    for split, recs in cuts.items():
        pd.DataFrame(recs).to_parquet(path / config / f"{split}-00000-of-00001.parquet")
    files = "\n".join(f"  - split: {s}\n    path: {config}/{s}-*" for s in cuts)
    (path / "README.md").write_text(f"---\nconfigs:\n- config_name: {config}\n  data_files:\n{files}\n---\n")


@pytest.mark.parametrize("subdir,kind", [("pubmed", "pubmed"), ("cnn_dailymail", "cnndm")])
def test_hub_parquet_source_loads_with_installed_datasets(tmp_path, monkeypatch, subdir, kind):
    """download_hf -> datasets.load_dataset(<repo>, <config>) -> <root>/<subdir>/{split}.parquet -> the loader."""
    repo = tmp_path / "hub" / subdir
    config = summarization.HF_DATASETS[subdir][1]
    _hub_like_repo(repo, config, _sample_records(kind, 10))
    monkeypatch.setitem(summarization.HF_DATASETS, subdir, (str(repo), config))
    splits, info = summarization.load_summarization(root=tmp_path / "data", subdir=subdir, download=True)
    assert {s: len(v) for s, v in splits.items()} == {"train": 6, "validation": 2, "test": 2}
    assert "train=train.parquet" in info["files"]
    assert all(ex.source and ex.target for ex in splits["train"])
    folder = tmp_path / "data" / subdir
    assert sorted(p.name for p in folder.iterdir()) == ["test.parquet", "train.parquet", "validation.parquet"]
    dataset = "pubmed" if subdir == "pubmed" else "cnndm"
    st = check_dataset(dataset, root=tmp_path / "data", overrides=["data.files=null"])
    assert st.present and st.rows == 10, st
