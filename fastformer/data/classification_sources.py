"""Per-dataset source resolution (search defaults, official URLs, download) and row reading with label sets.

Used by :func:`fastformer.data.classification.load_classification`; each ``data.loader`` maps to one branch of
:func:`resolve_sources` (which files) and :func:`read_rows` (which rows, label order, and what to report as used).
"""
from __future__ import annotations

import logging
from pathlib import Path

from fastformer.data import classification_formats as readers
from fastformer.data.download import DataUnavailableError, ensure_file
from fastformer.data.mind import MIND_PARTS, mind_download_hint
from fastformer.data.schema import DataOptions
from fastformer.errors import UserInputError

log = logging.getLogger(__name__)

IMDB_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
IMDB_MD5 = "7c2ac02c03563afcf9b574c7e56c153a"  # as published by torchtext / paddle dataset modules
AMAZON_URL = "http://snap.stanford.edu/data/amazon/productGraph/categoryFiles/reviews_Electronics_5.json.gz"
IMDB_RATINGS = ["1", "2", "3", "4", "7", "8", "9", "10"]
_JSON_EXT = (".json", ".json.gz", ".jsonl", ".jsonl.gz")


def under(root: str | Path, rel: str) -> Path:
    """``rel`` if absolute, else ``root / rel``."""
    return Path(rel) if Path(rel).is_absolute() else Path(root) / rel


def _subset(rows: readers.Rows, keep: list[int]) -> readers.Rows:
    return readers.Rows([rows.texts[i] for i in keep], [rows.labels[i] for i in keep], [rows.groups[i] for i in keep],
                        rows.skipped, rows.sources)


def _missing(key: str):
    raise UserInputError(f"data.{key} is required for loader=text (the record field holding the {key.split('_')[0]})")


def _first_existing(root: Path, candidates: list[str]) -> Path | None:
    return next((root / c for c in candidates if (root / c).exists()), None)


def resolve_sources(o: DataOptions) -> list[Path]:
    """Files to read for the configured dataset; downloads the official file when missing and allowed."""
    root = Path(o.root)
    if o.loader == "amazon":
        path = under(root, o.path) if o.path else _first_existing(root, [
            "amazon/reviews_Electronics_5.json.gz", "amazon/reviews_Electronics_5.json",
            "amazon/amazon_reviews_5core_sample.jsonl.gz"]) or (
            root / "amazon" if any(p.name.endswith(_JSON_EXT) for p in (root / "amazon").glob("*")) else None)
        if path is None or not path.exists():
            path = path or root / "amazon/reviews_Electronics_5.json.gz"
            path = ensure_file(path, url=AMAZON_URL if path.name == AMAZON_URL.rsplit("/", 1)[1] else None,
                               allow_download=o.download)
        files = sorted(p for p in path.iterdir() if p.name.endswith(_JSON_EXT)) if path.is_dir() else [path]
        if not files:
            raise DataUnavailableError(f"{path}: no *.json/*.json.gz review files inside; see data/README.md")
        return files
    if o.loader == "imdb":
        if (o.format or "aclimdb") == "diao_json":
            return [ensure_file(under(root, o.path or "imdb/data.json"), url=None)]  # user-supplied only
        path = under(root, o.path) if o.path else _first_existing(root, ["imdb/aclImdb", "imdb/aclImdb_v1.tar.gz"])
        path = path or root / "imdb/aclImdb_v1.tar.gz"
        official = path.name == "aclImdb_v1.tar.gz"
        return [ensure_file(path, url=IMDB_URL if official else None, md5=IMDB_MD5, allow_download=o.download)]
    if o.loader == "mind_topics":
        if o.path:
            path = under(root, o.path)
            if path.exists():
                return readers.mind_news_sources(path)
        else:  # <root>/mind/ (any layout inside), else <root>/MIND{small,large}_* folders/zips as newsrec reads them
            path = root / "mind"
            if path.exists() and any(p.name == "news.tsv" or p.suffix == ".zip" for p in path.rglob("*")):
                return readers.mind_news_sources(path)
            top = sorted(p for v in ("small", "large") for p in root.glob(f"MIND{v}_*")
                         if p.is_dir() or p.suffix == ".zip")
            if top:
                return [s for p in top for s in readers.mind_news_sources(p)]
        if o.size not in MIND_PARTS:
            raise UserInputError(f"data.size={o.size!r} is not one of {sorted(MIND_PARTS)}")
        names = [f"MIND{o.size}_{part}" for part in MIND_PARTS[o.size]]
        out = []
        for name in names:
            dest = path / f"{name}.zip"
            try:
                out.append(ensure_file(dest, allow_download=o.download, url=(o.urls or {}).get(name)))
            except DataUnavailableError as err:  # the official page and every file to place, not just this one
                raise DataUnavailableError(f"{str(err).splitlines()[0]}; {mind_download_hint(names, path)}") \
                    from None
        return out
    if o.loader == "text":
        if not o.path:
            raise UserInputError("data.path is required for loader=text (a .jsonl/.json/.csv/.tsv file under "
                                 "data.root)")
        return [ensure_file(under(root, o.path), url=None)]
    raise UserInputError(f"data.loader={o.loader!r} is not one of ['amazon', 'imdb', 'mind_topics', 'text']")


def _requested(o: DataOptions) -> int:
    caps = [o.max_train, o.max_eval, o.max_eval]
    return sum(s if c is None else min(s, c) for s, c in zip(o.split_sizes, caps))


def read_rows(o: DataOptions, sources: list[Path], cache_dir: Path) -> tuple[readers.Rows, list[str] | None, dict]:
    """Rows + fixed label order (None = sorted observed labels) + info fields describing what was used."""
    if o.loader == "amazon":
        rows = readers.read_amazon(sources, use_summary=o.use_summary, encoding=o.encoding)
        cats_all = sorted(set(rows.groups))
        used, note = cats_all, ""
        if o.categories:
            want = {c.lower().removesuffix("_5") for c in o.categories}
            keep = [i for i, g in enumerate(rows.groups) if g.lower().removesuffix("_5") in want]
            if len(keep) >= _requested(o) or not o.fallback_all_categories:
                if not keep:
                    raise UserInputError(f"data.categories={o.categories}: no rows in {sources}; present: {cats_all}")
                rows = _subset(rows, keep)
                used = sorted(set(rows.groups))
            else:
                note = f"; {o.categories} has only {len(keep)} rows < {_requested(o)} requested"
                log.warning("amazon: categories %s have %d rows < %d requested; falling back to all categories %s",
                            o.categories, len(keep), _requested(o), cats_all)
        text = "summary . reviewText" if o.use_summary else "reviewText"
        return rows, ["1", "2", "3", "4", "5"], {
            "data_used": f"Amazon 5-core reviews, categories {used}{note}, 5-class rating",
            "categories": used, "text_field": text, "label_field": "overall"}
    if o.loader == "imdb":
        if (o.format or "aclimdb") == "diao_json":
            rows = readers.read_table(sources[0], text_field=o.text_field or "review",
                                      label_field=o.label_field or "rating", fmt="json", encoding=o.encoding)
            return rows, None, {"data_used": "Diao et al. IMDB 10-class (user-supplied data.json)",
                                "text_field": o.text_field or "review", "label_field": o.label_field or "rating"}
        if o.format not in (None, "aclimdb") or o.label_mode not in ("rating8", "binary"):
            raise UserInputError(f"data.format={o.format!r}/label_mode={o.label_mode!r}: use aclimdb|diao_json and "
                             f"rating8|binary")
        rows = readers.read_aclimdb(sources[0], cache_dir=cache_dir, encoding=o.encoding)
        if o.label_mode == "binary":
            rows.labels = ["neg" if int(r) <= 4 else "pos" for r in rows.labels]
        kind = "8-class rating" if o.label_mode == "rating8" else "binary polarity"
        return rows, IMDB_RATINGS if o.label_mode == "rating8" else ["neg", "pos"], {
            "data_used": f"aclImdb {kind} (stand-in for Diao et al. 10-class)", "text_field": "review file text",
            "label_field": "rating in file name" if o.label_mode == "rating8" else "pos/neg folder"}
    if o.loader == "mind_topics":
        bodies = readers.read_body_file(under(o.root, o.body_path)) if o.body_path else None
        rows = readers.read_mind_news(sources, bodies=bodies, body_column=o.body_column, encoding=o.encoding)
        with_body = bodies is not None or o.body_column is not None
        text = "body" if with_body else "title . abstract (no body supplied; the paper classifies bodies)"
        log.info("mind_topics: text = %s", text)
        return rows, None, {"data_used": f"MIND news topics, text = {text}", "text_field": text,
                            "label_field": "category"}
    rows = readers.read_table(sources[0], text_field=o.text_field or _missing("text_field"),
                              label_field=o.label_field or _missing("label_field"), fmt=o.format,
                              encoding=o.encoding)
    return rows, o.label_names, {"data_used": f"{o.name} from {sources[0].name}", "text_field": o.text_field,
                                 "label_field": o.label_field}
