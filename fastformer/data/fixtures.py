"""Tiny fixture datasets in the original distribution formats, with a learnable label signal.

Every text mixes shared filler words with a few words specific to its label, so a small model reaches high accuracy
in a few steps, while the files exercise the real parsers (gzip JSON lines with McAuley fields, the aclImdb
folder + tarball layout with ``<br />`` tags, MIND ``news.tsv`` in a folder and in a zip, jsonl/csv tables)::

    paths = write_all_fixtures(tmp_path, n_per_class=20)   # then data.root=tmp_path works with the default configs
"""
from __future__ import annotations

import csv
import gzip
import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np

FILLER = ("the it was and this that for with very really just some time one also but have had would what they "
          "when there about more only after first then other could because well much like after again").split()
RATING_WORDS = {1: "awful broken refund", 2: "poor disappointing flimsy", 3: "okay average mediocre",
                4: "good solid nice", 5: "excellent perfect superb"}
IMDB_WORDS = {1: "atrocious unwatchable", 2: "terrible boring", 3: "weak dull", 4: "flawed uneven",
              7: "enjoyable decent", 8: "great moving", 9: "brilliant gripping", 10: "masterpiece flawless"}
MIND_WORDS = {"sports": "touchdown quarterback league", "finance": "stocks earnings market",
              "weather": "storm forecast rain", "foodanddrink": "recipe chef dinner"}
TEXT_WORDS = {"positive": "love happy wonderful", "negative": "hate sad terrible", "neutral": "fine normal usual"}


def _sentence(rng: np.random.Generator, words: str, n_filler: int = 14) -> str:
    """Filler words with 3 label words mixed in, capitalised, with punctuation."""
    toks = list(rng.choice(FILLER, size=n_filler)) + list(rng.choice(words.split(), size=3))
    rng.shuffle(toks)
    cut = int(rng.integers(4, len(toks) - 3))
    return " ".join(toks[:cut]).capitalize() + ", " + " ".join(toks[cut:]) + "."


def write_amazon(root: Path, *, n_per_class: int = 20, categories: tuple[str, ...] = ("Electronics_5", "Books_5"),
                 seed: int = 0) -> Path:
    """``amazon/amazon_reviews_5core_sample.jsonl.gz``: ``overall``/``reviewText``/``summary``/``category``."""
    rng, out = np.random.default_rng(seed), Path(root) / "amazon" / "amazon_reviews_5core_sample.jsonl.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8") as f:
        for cat in categories:
            for rating, words in RATING_WORDS.items():
                for k in range(n_per_class):
                    rec = {"overall": float(rating), "reviewText": _sentence(rng, words) + " " + _sentence(rng, words),
                           "category": cat}
                    if k % 2:
                        rec["summary"] = words.split()[0].capitalize()
                    f.write(json.dumps(rec) + "\n")
    return out


def write_amazon_official(root: Path, *, n_per_class: int = 20, category: str = "Electronics", seed: int = 0) -> Path:
    """``amazon/reviews_<category>_5.json.gz`` as distributed (no category field; extra McAuley fields)."""
    rng, out = np.random.default_rng(seed), Path(root) / "amazon" / f"reviews_{category}_5.json.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(out, "wt", encoding="utf-8") as f:
        for rating, words in RATING_WORDS.items():
            for k in range(n_per_class):
                f.write(json.dumps({"reviewerID": f"A{k}", "asin": f"B{rating:03d}{k}", "helpful": [0, 0],
                                    "reviewText": _sentence(rng, words), "overall": float(rating),
                                    "summary": words.split()[0], "unixReviewTime": 1400000000}) + "\n")
    return out


def write_imdb(root: Path, *, n_per_class: int = 10, seed: int = 0, folder: bool = True,
               tarball: bool = True) -> dict[str, Path]:
    """``imdb/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt`` and/or ``imdb/aclImdb_v1.tar.gz`` (same files)."""
    rng, base = np.random.default_rng(seed), Path(root) / "imdb"
    files: dict[str, str] = {}
    for split in ("train", "test"):
        idx = 0
        for rating, words in IMDB_WORDS.items():
            for _ in range(n_per_class):
                pol = "pos" if rating >= 7 else "neg"
                body = _sentence(rng, words) + "<br /><br />" + _sentence(rng, words)
                files[f"aclImdb/{split}/{pol}/{idx}_{rating}.txt"] = body
                idx += 1
    files["aclImdb/README"] = "Large Movie Review Dataset v1.0 (fixture)"
    out: dict[str, Path] = {}
    if folder:
        for name, text in files.items():
            (base / name).parent.mkdir(parents=True, exist_ok=True)
            (base / name).write_text(text, encoding="utf-8")
        out["folder"] = base / "aclImdb"
    if tarball:
        base.mkdir(parents=True, exist_ok=True)
        out["tarball"] = base / "aclImdb_v1.tar.gz"
        with tarfile.open(out["tarball"], "w:gz") as tar:
            for name, text in files.items():
                data = text.encode("utf-8")
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return out


def _news_rows(rng: np.random.Generator, n_per_class: int, start: int) -> list[str]:
    rows, nid = [], start
    for cat, words in MIND_WORDS.items():
        for _ in range(n_per_class):
            title, abstract = _sentence(rng, words, 6), _sentence(rng, words)
            rows.append("\t".join([f"N{nid}", cat, f"{cat}sub", title, abstract, f"https://assets.msn.com/N{nid}",
                                   "[]", "[]"]))
            nid += 1
    return rows


def _behaviors(rng: np.random.Generator, news_ids: list[str], n: int) -> str:
    lines = []
    for i in range(n):
        hist = " ".join(rng.choice(news_ids, size=5, replace=False))
        imps = " ".join(f"{nid}-{int(k == 0)}" for k, nid in enumerate(rng.choice(news_ids, size=4, replace=False)))
        lines.append(f"{i + 1}\tU{i % 7}\t11/11/2019 9:05:58 AM\t{hist}\t{imps}")
    return "\n".join(lines) + "\n"


def write_mind(root: Path, *, n_per_class: int = 10, seed: int = 0, n_behaviors: int = 20) -> dict[str, Path]:
    """``mind/MINDsmall_train/{news,behaviors}.tsv`` (folder) and ``mind/MINDsmall_dev.zip`` (archive, in place).

    The dev news repeats one train news id, as real MIND splits share news; it must be counted once.
    """
    rng, base = np.random.default_rng(seed), Path(root) / "mind"
    train_rows = _news_rows(rng, n_per_class, 0)
    dev_rows = _news_rows(rng, n_per_class, 10_000) + [train_rows[0]]
    (base / "MINDsmall_train").mkdir(parents=True, exist_ok=True)
    (base / "MINDsmall_train" / "news.tsv").write_text("\n".join(train_rows) + "\n", encoding="utf-8")
    ids = [r.split("\t", 1)[0] for r in train_rows]
    (base / "MINDsmall_train" / "behaviors.tsv").write_text(_behaviors(rng, ids, n_behaviors), encoding="utf-8")
    with zipfile.ZipFile(base / "MINDsmall_dev.zip", "w") as zf:
        zf.writestr("news.tsv", "\n".join(dev_rows) + "\n")
        zf.writestr("behaviors.tsv", _behaviors(rng, [r.split("\t", 1)[0] for r in dev_rows], n_behaviors))
    return {"folder": base / "MINDsmall_train", "zip": base / "MINDsmall_dev.zip", "root": base}


def write_text_tables(root: Path, *, n_per_class: int = 20, seed: int = 0) -> dict[str, Path]:
    """``text/data.jsonl`` and ``text/data.csv`` with fields ``text`` and ``label`` (3 sentiment classes)."""
    rng, base = np.random.default_rng(seed), Path(root) / "text"
    base.mkdir(parents=True, exist_ok=True)
    recs = [{"text": _sentence(rng, words), "label": label}
            for label, words in TEXT_WORDS.items() for _ in range(n_per_class)]
    with open(base / "data.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in recs)
    with open(base / "data.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["text", "label"])
        writer.writeheader()
        writer.writerows(recs)
    return {"jsonl": base / "data.jsonl", "csv": base / "data.csv"}


def write_all_fixtures(root: Path, *, n_per_class: int = 20, seed: int = 0) -> dict[str, Path]:
    """All classification fixtures under ``root`` in the layout the default configs search; returns their paths."""
    root = Path(root)
    imdb, mind, text = (write_imdb(root, n_per_class=n_per_class, seed=seed),
                        write_mind(root, n_per_class=n_per_class, seed=seed),
                        write_text_tables(root, n_per_class=n_per_class, seed=seed))
    return {"root": root, "amazon": write_amazon(root, n_per_class=n_per_class, seed=seed),
            "imdb": imdb["folder"], "imdb_tarball": imdb["tarball"], "mind": mind["root"],
            "mind_zip": mind["zip"], "text_jsonl": text["jsonl"], "text_csv": text["csv"]}
