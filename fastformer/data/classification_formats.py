"""Readers for the original distribution formats -> :class:`Rows` (text, raw label, group) + skipped-row counts.

* Amazon (McAuley 5-core): JSON lines (``.json``/``.json.gz``/``.jsonl.gz``; 2014 loose-JSON lines are accepted via
  ``ast.literal_eval``) with ``overall``, ``reviewText``, optional ``summary`` and ``category``; without a
  ``category`` field the category comes from the file name (``reviews_Electronics_5.json.gz`` -> ``Electronics_5``).
* aclImdb: the tarball, streamed with ``tarfile`` (no extraction), or the extracted folder; the rating is in the file
  name ``<id>_<rating>.txt``. Parsed rows are cached as ``.jsonl.gz`` so the second read skips the tarball.
* MIND ``news.tsv`` (from folders, or zips read in place) with an optional body file/column.
* Generic ``jsonl``/``json``/``csv``/``tsv`` with named text/label fields (also the Diao et al. ``data.json`` hook).

Bad rows (undecodable bytes, malformed lines, empty text, missing label) are counted per reason, never raised.
"""
from __future__ import annotations

import ast
import csv
import gzip
import hashlib
import io
import json
import re
import tarfile
import zipfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_IMDB_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg)/(\d+)_(\d+)\.txt$")
_HTML_BREAK = re.compile(r"<br\s*/?>", re.I)


@dataclass
class Rows:
    """Valid rows of one dataset in a deterministic order, plus where they came from."""
    texts: list[str] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)   # Amazon category / aclImdb official split / "" otherwise
    skipped: Counter = field(default_factory=Counter)
    sources: list[str] = field(default_factory=list)

    def add(self, text: Any, label: Any, group: str = "") -> None:
        if not isinstance(text, str) or not text.strip():
            self.skipped["empty_text"] += 1
        elif label is None or (isinstance(label, str) and not label.strip()):
            self.skipped["missing_label"] += 1
        else:
            self.texts.append(text.strip())
            self.labels.append(str(label).strip())
            self.groups.append(group)


def open_text_bytes(path: Path):
    """Binary handle, transparently gunzipped for ``*.gz``."""
    return gzip.open(path, "rb") if str(path).endswith(".gz") else open(path, "rb")


def iter_json_records(path: Path, rows: Rows) -> Iterator[dict]:
    """Dicts from a JSON-lines file, or from a top-level JSON array (e.g. JMARS ``data.json``)."""
    with open_text_bytes(path) as f:
        head = f.read(64).lstrip()
        f.seek(0)
        if head.startswith(b"["):
            try:
                records = json.loads(f.read().decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise ValueError(f"{path}: not a valid JSON array ({err}); expected JSON lines or one JSON list") \
                    from None
            lines: Iterator[Any] = iter(records)
        else:
            lines = (line for line in f if line.strip())
        for line in lines:
            if isinstance(line, dict):
                yield line
                continue
            try:
                s = line.decode("utf-8")
            except UnicodeDecodeError:
                rows.skipped["undecodable"] += 1
                continue
            try:
                rec = json.loads(s)
            except json.JSONDecodeError:
                try:
                    rec = ast.literal_eval(s)  # McAuley 2014 "loose JSON" (Python dict literal) lines
                except (ValueError, SyntaxError):
                    rec = None
            if isinstance(rec, dict):
                yield rec
            else:
                rows.skipped["malformed"] += 1


def iter_csv_records(path: Path, rows: Rows, *, delimiter: str) -> Iterator[dict]:
    with open_text_bytes(path) as fb:
        text = io.TextIOWrapper(fb, encoding="utf-8", errors="surrogateescape", newline="")
        for rec in csv.DictReader(text, delimiter=delimiter):
            if any(isinstance(v, str) and re.search(r"[\udc80-\udcff]", v) for v in rec.values()):
                rows.skipped["undecodable"] += 1
                continue
            yield rec


def table_format(path: Path, fmt: str | None) -> str:
    """``jsonl``/``json``/``csv``/``tsv`` from ``fmt`` or the file extension (``.gz`` ignored)."""
    if fmt and fmt != "auto":
        return fmt
    suffix = Path(str(path).removesuffix(".gz")).suffix.lstrip(".").lower()
    if suffix in ("jsonl", "json", "csv", "tsv"):
        return suffix
    raise ValueError(f"{path}: cannot infer the table format from '.{suffix}'; set data.format to jsonl|json|csv|tsv")


def _field_text(rec: dict, fields: list[str]) -> str | None:
    parts = [rec.get(f) for f in fields]
    parts = [" ".join(p) if isinstance(p, list) else p for p in parts if p not in (None, "")]
    return " . ".join(str(p) for p in parts) if parts else None


def read_table(path: Path, *, text_field: str | list[str], label_field: str, fmt: str | None = None) -> Rows:
    """Generic text classification table: one row per record, ``text_field`` (joined if a list) + ``label_field``."""
    rows, fields = Rows(sources=[str(path)]), [text_field] if isinstance(text_field, str) else list(text_field)
    kind = table_format(path, fmt)
    recs = (iter_json_records(path, rows) if kind in ("jsonl", "json")
            else iter_csv_records(path, rows, delimiter="," if kind == "csv" else "\t"))
    for rec in recs:
        rows.add(_field_text(rec, fields), rec.get(label_field))
    return rows


def amazon_category_from_name(path: Path) -> str:
    """``reviews_Electronics_5.json.gz`` -> ``Electronics_5`` (the official files carry no category field)."""
    m = re.match(r"(?:reviews_)?(.+?)\.jsonl?(?:\.gz)?$", Path(path).name)
    return m.group(1) if m else Path(path).name


def read_amazon(paths: list[Path], *, use_summary: bool) -> Rows:
    rows = Rows(sources=[str(p) for p in paths])
    for path in paths:
        file_cat = amazon_category_from_name(path)
        for rec in iter_json_records(path, rows):
            text = _field_text(rec, ["summary", "reviewText"] if use_summary else ["reviewText"])
            overall = rec.get("overall")
            label = (str(int(overall)) if isinstance(overall, (int, float)) and float(overall).is_integer()
                     else overall)
            rows.add(text, label, str(rec.get("category") or file_cat))
    return rows


def file_key(path: Path) -> str:
    st = Path(path).stat()
    return hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def read_aclimdb(path: Path, *, cache_dir: Path) -> Rows:
    """aclImdb labelled reviews as rows with label = rating ("1".."10") and group = "<split>/<pos|neg>"."""
    cache = Path(cache_dir) / "parsed" / f"aclimdb-{file_key(path)}.jsonl.gz"
    rows, recs = Rows(sources=[str(path)]), []
    if cache.exists():
        with gzip.open(cache, "rt", encoding="utf-8") as f:
            head = json.loads(f.readline())
            rows.skipped.update(head["skipped"])
            recs = [json.loads(line) for line in f]
    else:
        for name, data in _iter_imdb_files(path):
            m = _IMDB_MEMBER.search(name)
            if not m:
                continue
            try:
                text = _HTML_BREAK.sub(" ", data.decode("utf-8"))
            except UnicodeDecodeError:
                rows.skipped["undecodable"] += 1
                continue
            split, pol, idx, rating = m.groups()
            recs.append([split, pol, int(idx), rating, text])
        recs.sort(key=lambda r: (r[0], r[1], r[2]))  # archive order differs from folder order: fix one
        from fastformer.utils import atomic_path  # imports torch: only here, when the cache is written
        with atomic_path(cache) as tmp, gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
            f.write(json.dumps({"skipped": dict(rows.skipped)}) + "\n")
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in recs)
    for split, pol, _, rating, text in recs:
        rows.add(text, rating, f"{split}/{pol}")
    return rows


def _iter_imdb_files(path: Path) -> Iterator[tuple[str, bytes]]:
    path = Path(path)
    if path.is_dir():
        for sub in sorted(path.rglob("*.txt")):
            yield sub.relative_to(path).as_posix(), sub.read_bytes()
        return
    with tarfile.open(path, mode="r|*") as tar:  # streaming: one pass, no random access, no extraction
        for member in tar:
            if member.isfile() and _IMDB_MEMBER.search(member.name):
                yield member.name, tar.extractfile(member).read()


def mind_news_sources(path: Path) -> list[Path]:
    """A ``news.tsv``, a MIND zip, or a folder holding any of them (searched recursively, sorted)."""
    path = Path(path)
    if path.is_file():
        return [path]
    found = sorted(p for p in path.rglob("*") if p.name == "news.tsv" or p.suffix == ".zip")
    if not found:
        raise FileNotFoundError(f"{path}: no news.tsv or MIND *.zip inside; see data/README.md for the layout")
    return found


def _iter_news_lines(src: Path) -> Iterator[bytes]:
    if src.suffix == ".zip":
        with zipfile.ZipFile(src) as zf:
            names = [n for n in zf.namelist() if n.rsplit("/", 1)[-1] == "news.tsv"]
            for name in names:
                with zf.open(name) as f:
                    yield from f
    else:
        with open(src, "rb") as f:
            yield from f


def read_body_file(path: Path) -> dict[str, str]:
    """News bodies: TSV ``news_id<TAB>body`` or JSON lines ``{"nid"|"news_id"|"id": .., "body": str | [str]}``."""
    bodies: dict[str, str] = {}
    if table_format(path, None) in ("jsonl", "json"):
        for rec in iter_json_records(path, Rows()):
            nid = rec.get("nid") or rec.get("news_id") or rec.get("id")
            body = rec.get("body")
            bodies[str(nid)] = " ".join(body) if isinstance(body, list) else str(body or "")
    else:
        with open_text_bytes(path) as f:
            for line in f:
                nid, _, body = line.decode("utf-8", errors="replace").rstrip("\n").partition("\t")
                bodies[nid] = body
    return bodies


def read_mind_news(sources: list[Path], *, bodies: dict[str, str] | None = None,
                   body_column: int | None = None) -> Rows:
    """Unique news over ``sources`` (first id wins); text = body if given, else ``title . abstract``."""
    rows, seen = Rows(sources=[str(s) for s in sources]), set()
    for src in sources:
        for raw in _iter_news_lines(src):
            try:
                cols = raw.decode("utf-8").rstrip("\r\n").split("\t")
            except UnicodeDecodeError:
                rows.skipped["undecodable"] += 1
                continue
            if len(cols) < 5:
                rows.skipped["malformed"] += 1
                continue
            nid, category, _, title, abstract = cols[:5]
            if nid in seen:
                continue
            seen.add(nid)
            if bodies is not None or body_column is not None:
                body = bodies.get(nid) if bodies is not None else (cols[body_column] if len(cols) > body_column
                                                                     else None)
                if not body or not body.strip():
                    rows.skipped["missing_body"] += 1
                    continue
                rows.add(body, category)
            else:
                rows.add(" . ".join(p for p in (title, abstract) if p.strip()), category)
    return rows
