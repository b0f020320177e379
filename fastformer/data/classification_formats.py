"""Readers for the original distribution formats -> :class:`Rows` (text, raw label, group) + skipped-row counts.

* Amazon (McAuley 5-core): JSON lines (``.json``/``.json.gz``/``.jsonl.gz``; 2014 loose-JSON lines are accepted via
  ``ast.literal_eval``) with ``overall``, ``reviewText``, optional ``summary`` and ``category``; without a
  ``category`` field the category comes from the file name (``reviews_Electronics_5.json.gz`` -> ``Electronics_5``).
* aclImdb: the tarball, streamed with ``tarfile`` (no extraction), or the extracted folder; the rating is in the file
  name ``<id>_<rating>.txt``. Parsed rows are cached as ``.jsonl.gz`` so the second read skips the tarball.
* MIND ``news.tsv`` (from folders, or zips read in place) with an optional body file/column.
* Generic ``jsonl``/``json``/``csv``/``tsv`` with named text/label fields (also the Diao et al. ``data.json`` hook).

Bad rows (undecodable bytes, malformed lines, empty text, missing label) are counted per reason, never raised; the
caller (:func:`fastformer.data.classification.load_classification`) stops when more than ``data.max_skip_fraction`` of
the rows would be dropped. A file that cannot be read at all -- empty, not gzip although named ``.gz`` (the magic bytes
decide), a truncated gzip stream, binary data, CSV read as JSON lines, no record with the configured fields -- raises
:class:`~fastformer.errors.UserInputError` with one line naming the file, what it holds (:func:`sniff`) and the fix.
Text is decoded with ``data.encoding`` (default utf-8).
"""
from __future__ import annotations

import ast
import codecs
import contextlib
import csv
import gzip
import hashlib
import io
import json
import re
import tarfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastformer.errors import UserInputError

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
    records: int = 0                                   # records parsed (valid or not; undecodable lines excluded)
    fields: Counter = field(default_factory=Counter)   # field name -> records that have it (generic tables)

    def add(self, text: Any, label: Any, group: str = "") -> None:
        if not isinstance(text, str) or not text.strip():
            self.skipped["empty_text"] += 1
        elif label is None or (isinstance(label, str) and not label.strip()):
            self.skipped["missing_label"] += 1
        else:
            self.texts.append(text.strip())
            self.labels.append(str(label).strip())
            self.groups.append(group)


GZIP_MAGIC, ZIP_MAGIC = b"\x1f\x8b", b"PK\x03\x04"


def check_encoding(encoding: str) -> str:
    """``encoding`` when Python knows the codec, else one line naming data.encoding and common choices."""
    try:
        codecs.lookup(encoding)
    except (LookupError, TypeError):
        raise UserInputError(f"data.encoding={encoding!r} is not a text encoding Python knows; use e.g. utf-8, "
                             f"latin-1, cp1252 or utf-16") from None
    return encoding


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == GZIP_MAGIC


def open_text_bytes(path: Path):
    """Binary handle, gunzipped when the file starts with the gzip magic bytes; a ``*.gz`` name without them stops
    with one line (what the file holds and the fix) instead of a ``BadGzipFile`` traceback."""
    path = Path(path)
    if is_gzip(path):
        return gzip.open(path, "rb")
    if str(path).endswith(".gz"):
        raise UserInputError(f"{path}: named .gz but not gzip-compressed (no gzip magic bytes 1f 8b; the file holds "
                             f"{sniff(path)}); rename it without .gz, or compress it with `gzip`")
    return open(path, "rb")


@contextlib.contextmanager
def readable(path: Path):
    """Turn a truncated or corrupt gzip stream / an unreadable CSV into one line naming the file."""
    try:
        yield
    except (EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise UserInputError(f"{path}: the gzip stream is truncated or corrupt ({type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else 'unexpected end'}); download or compress "
                             f"the file again") from None
    except csv.Error as err:
        raise UserInputError(f"{path}: cannot be read as CSV/TSV ({err}); the file holds {sniff(path)}; fix the file "
                             f"or set data.format") from None


def _head(path: Path, n: int = 8192) -> bytes:
    try:
        with (gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")) as f:
            return f.read(n)
    except (OSError, EOFError, zlib.error):
        with open(path, "rb") as f:
            return f.read(n)


def _looks_binary(head: bytes) -> bool:
    if not head:
        return False
    if b"\x00" in head and not head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return True
    control = sum(b < 32 and b not in (9, 10, 13) for b in head)
    return control > 0.05 * len(head)


def sniff(path: Path, encoding: str = "utf-8") -> str:
    """What ``path`` holds, in words, for error messages: empty, a zip, binary data, JSON lines with fields [...],
    a JSON array, CSV/TSV with columns [...], or plain text; adds when it is not valid ``encoding``."""
    path = Path(path)
    if path.stat().st_size == 0:
        return "nothing (0 bytes)"
    head = _head(path)
    gz = "gzip-compressed " if is_gzip(path) else ""
    if head.startswith(ZIP_MAGIC):
        return f"{gz}a zip archive"
    if _looks_binary(head):
        return f"{gz}binary data, not text ({len(head)} bytes read, starting {head[:8].hex(' ')})"
    text = head.decode(encoding, errors="replace")
    bad_enc = ""
    try:
        head.decode(encoding)
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not just a character cut at the end of the sample
            bad_enc = (f", not valid {encoding} (byte {head[err.start:err.start + 1].hex()} at offset {err.start}; "
                       f"latin-1/cp1252 text looks like this)")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return f"{gz}only whitespace"
    first = lines[0].strip()
    if first.startswith("{"):
        try:
            return f"{gz}JSON lines with fields {sorted(json.loads(first))}{bad_enc}"
        except (json.JSONDecodeError, TypeError, AttributeError):
            return f"{gz}text starting with '{{' that is not one JSON object per line{bad_enc}"
    if first.startswith("["):
        return f"{gz}a JSON array{bad_enc}"
    for name, delim in (("TSV", "\t"), ("CSV", ",")):
        if delim in first:
            cols = next(csv.reader([first], delimiter=delim))
            return f"{gz}{name} with columns {[c.strip() for c in cols][:20]}{bad_enc}"
    return f"{gz}plain text starting {first[:40]!r}{bad_enc}"


def iter_json_records(path: Path, rows: Rows, *, encoding: str = "utf-8") -> Iterator[dict]:
    """Dicts from a JSON-lines file, or from a top-level JSON array (e.g. JMARS ``data.json``)."""
    with open_text_bytes(path) as f, readable(path):
        head = f.read(64).lstrip()
        f.seek(0)
        if head.startswith(b"["):
            try:
                records = json.loads(f.read().decode(encoding))
            except (UnicodeDecodeError, json.JSONDecodeError) as err:
                raise UserInputError(f"{path}: starts with '[' but is not a valid JSON array ({err}); expected JSON "
                                     f"lines or one JSON list") from None
            lines: Iterator[Any] = iter(records)
        else:
            lines = (line for line in f if line.strip())
        for line in lines:
            if isinstance(line, dict):
                rows.records += 1
                yield line
                continue
            try:
                s = line.decode(encoding)
            except UnicodeDecodeError:
                rows.skipped["undecodable"] += 1
                continue
            try:
                rec = json.loads(s)
            except json.JSONDecodeError:
                try:
                    rec = ast.literal_eval(s)  # McAuley 2014 "loose JSON" (Python dict literal) lines
                except (ValueError, SyntaxError, MemoryError, RecursionError):
                    rec = None
            if isinstance(rec, dict):
                rows.records += 1
                yield rec
            else:
                rows.skipped["malformed"] += 1


def iter_csv_records(path: Path, rows: Rows, *, delimiter: str, encoding: str = "utf-8") -> Iterator[dict]:
    with open_text_bytes(path) as fb, readable(path):
        text = io.TextIOWrapper(fb, encoding=encoding, errors="surrogateescape", newline="")
        for rec in csv.DictReader(text, delimiter=delimiter):
            if any(isinstance(v, str) and re.search(r"[\udc80-\udcff]", v) for v in rec.values()):
                rows.skipped["undecodable"] += 1
                continue
            rows.records += 1
            yield rec


def table_format(path: Path, fmt: str | None) -> str:
    """``jsonl``/``json``/``csv``/``tsv`` from ``fmt`` or the file extension (``.gz`` ignored)."""
    if fmt and fmt != "auto":
        if fmt not in ("jsonl", "json", "csv", "tsv"):
            raise UserInputError(f"data.format={fmt!r} is not one of auto, jsonl, json, csv, tsv")
        return fmt
    suffix = Path(str(path).removesuffix(".gz")).suffix.lstrip(".").lower()
    if suffix in ("jsonl", "json", "csv", "tsv"):
        return suffix
    raise UserInputError(f"{path}: cannot infer the table format from '.{suffix}' (the file holds {sniff(path)}); "
                         f"set data.format to jsonl|json|csv|tsv")


def _field_text(rec: dict, fields: list[str]) -> str | None:
    parts = [rec.get(f) for f in fields]
    parts = [" ".join(p) if isinstance(p, list) else p for p in parts if p not in (None, "")]
    return " . ".join(str(p) for p in parts) if parts else None


def _suggest_format(path: Path, kind: str, fmt: str | None, encoding: str) -> str:
    held = sniff(path, encoding)
    how = f"data.format={fmt}" if fmt and fmt != "auto" else "data.format=auto (from the extension)"
    guess = next((f for word, f in (("JSON lines", "jsonl"), ("JSON array", "json"), ("CSV", "csv"), ("TSV", "tsv"))
                  if held.split(" with ")[0].endswith(word) or f" {word} " in f" {held} "), None)
    if "not valid" in held:
        fix = "set data.encoding to the file's encoding (e.g. data.encoding=latin-1)"
    elif guess and guess != kind:
        fix = f"set data.format={guess}"
    else:
        fix = "check the file (one record per line, or a header row for csv/tsv)"
    return f"read as {kind} ({how}), but the file holds {held}; {fix}"


def read_table(path: Path, *, text_field: str | list[str], label_field: str, fmt: str | None = None,
               encoding: str = "utf-8") -> Rows:
    """Generic text classification table: one row per record, ``text_field`` (joined if a list) + ``label_field``.

    Stops with one line (:class:`UserInputError`) when the file is empty, holds no record in this format, or no
    record has the text or label field (the message lists the fields the file has)."""
    path = Path(path)
    rows, fields = Rows(sources=[str(path)]), [text_field] if isinstance(text_field, str) else list(text_field)
    if path.stat().st_size == 0:
        raise UserInputError(f"{path}: the file is empty (0 bytes); put one record per line in it (fields "
                             f"{fields[0]!r} and {label_field!r}), or point data.path at the right file")
    kind = table_format(path, fmt)
    recs = (iter_json_records(path, rows, encoding=encoding) if kind in ("jsonl", "json")
            else iter_csv_records(path, rows, delimiter="," if kind == "csv" else "\t", encoding=encoding))
    for rec in recs:
        if rows.records <= 1000:
            rows.fields.update(rec.keys())
        rows.add(_field_text(rec, fields), rec.get(label_field))
    if not rows.records:
        bad = {k: v for k, v in rows.skipped.items() if v}
        what = f"0 records ({', '.join(f'{v} {k}' for k, v in bad.items())} lines)" if bad else "0 records"
        raise UserInputError(f"{path}: {what}: {_suggest_format(path, kind, fmt, encoding)}")
    has = sorted(rows.fields, key=str)
    for key, names in (("text_field", fields), ("label_field", [label_field])):
        if not any(n in rows.fields for n in names):
            near = f"; data.format={kind}" if kind in ("csv", "tsv") and len(has) == 1 else ""
            raise UserInputError(f"{path}: no record has the field{'s' * (len(names) > 1)} data.{key}="
                                 f"{names[0] if len(names) == 1 else names!r}; the file's fields are {has}{near}. "
                                 f"Fix: set data.{key} to one of them")
    return rows


def amazon_category_from_name(path: Path) -> str:
    """``reviews_Electronics_5.json.gz`` -> ``Electronics_5`` (the official files carry no category field)."""
    m = re.match(r"(?:reviews_)?(.+?)\.jsonl?(?:\.gz)?$", Path(path).name)
    return m.group(1) if m else Path(path).name


def read_amazon(paths: list[Path], *, use_summary: bool, encoding: str = "utf-8") -> Rows:
    rows = Rows(sources=[str(p) for p in paths])
    for path in paths:
        file_cat = amazon_category_from_name(path)
        for rec in iter_json_records(path, rows, encoding=encoding):
            text = _field_text(rec, ["summary", "reviewText"] if use_summary else ["reviewText"])
            overall = rec.get("overall")
            label = (str(int(overall)) if isinstance(overall, (int, float)) and float(overall).is_integer()
                     else overall)
            rows.add(text, label, str(rec.get("category") or file_cat))
    return rows


def file_key(path: Path) -> str:
    st = Path(path).stat()
    return hashlib.sha1(f"{Path(path).resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]


def read_aclimdb(path: Path, *, cache_dir: Path, encoding: str = "utf-8") -> Rows:
    """aclImdb labelled reviews as rows with label = rating ("1".."10") and group = "<split>/<pos|neg>"."""
    enc = "" if codecs.lookup(encoding).name == "utf-8" else f"-{codecs.lookup(encoding).name}"
    cache = Path(cache_dir) / "parsed" / f"aclimdb-{file_key(path)}{enc}.jsonl.gz"
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
                text = _HTML_BREAK.sub(" ", data.decode(encoding))
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
    try:
        tar = tarfile.open(path, mode="r|*")  # streaming: one pass, no random access, no extraction
    except tarfile.TarError as err:
        raise UserInputError(f"{path}: not a readable tar archive ({err}; the file holds {sniff(path)}); delete it "
                             f"and download aclImdb_v1.tar.gz again, or point data.path at the extracted aclImdb "
                             f"folder") from None
    with tar, readable(path):
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
        from fastformer.data.download import DataUnavailableError
        raise DataUnavailableError(f"{path}: no news.tsv or MIND *.zip inside; see data/README.md for the layout")
    return found


def _iter_news_lines(src: Path) -> Iterator[bytes]:
    if src.suffix == ".zip":
        try:
            zf = zipfile.ZipFile(src)
        except zipfile.BadZipFile as err:
            raise UserInputError(f"{src}: not a readable zip archive ({err}; the file holds {sniff(src)}); delete it "
                                 f"and download it again (https://msnews.github.io/)") from None
        with zf:
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
                   body_column: int | None = None, encoding: str = "utf-8") -> Rows:
    """Unique news over ``sources`` (first id wins); text = body if given, else ``title . abstract``."""
    rows, seen = Rows(sources=[str(s) for s in sources]), set()
    for src in sources:
        for raw in _iter_news_lines(src):
            try:
                cols = raw.decode(encoding).rstrip("\r\n").split("\t")
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
