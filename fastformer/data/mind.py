"""MIND (Microsoft News Dataset, Wu et al. ACL 2020) loader for news recommendation, official file layout.

A split lives in ``<root>/MIND<version>_<split>/`` (folder) or ``<root>/MIND<version>_<split>.zip`` (the official
archive, read in place), with ``version`` in ``small | large | synthetic`` (synthetic =
``fastformer.data.synthetic_mind``) and ``split`` in ``train | dev | test``. Files, tab-separated, no header:

* ``news.tsv``: ``news_id, category, subcategory, title, abstract, url, title_entities, abstract_entities``
* ``behaviors.tsv``: ``impression_id, user_id, time, history, impressions`` where ``history`` is space-separated
  news ids (may be empty) and ``impressions`` is ``N123-1 N456-0 ...`` (``N123 N456`` without labels in
  MINDlarge_test).

News ids missing from ``news.tsv`` are never silently mapped: ``MindSplit.drop_unknown()`` removes them from
histories and candidates and counts what it removed (``MindSplit.stats``).
"""
from __future__ import annotations

import csv
import io
import logging
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from fastformer.data.download import DataUnavailableError, ensure_file
from fastformer.errors import UserInputError

log = logging.getLogger(__name__)

MIND_VERSIONS = ("small", "large", "synthetic")
MIND_SPLITS = ("train", "dev", "test")
#: the official archives of each version (MINDsmall has no test split); their download URLs live in the data configs
#: (``urls`` in configs/data/mind_rec.yaml and mind_topics.yaml), so a moved source is a config edit
MIND_PARTS = {"small": ("train", "dev"), "large": ("train", "dev", "test")}
MIND_PAGE = "https://msnews.github.io/"


def mind_download_hint(names: list[str], folder: str | Path) -> str:
    """Where MIND comes from and exactly which files go where (the end of every failed-download line)."""
    files = ", ".join(f"{n}.zip" for n in names)
    return (f"MIND is published at {MIND_PAGE} (the blob URLs it listed stopped serving the files, msnews/MIND#17): "
            f"get {files} from there and place {'them' if len(names) > 1 else 'it'} in {Path(folder).resolve()}/ "
            f"(zips are read in place), or set data.urls.<name> in the data config to a working copy")


@dataclass
class News:
    news_id: str
    category: str
    subcategory: str
    title: str
    abstract: str = ""


@dataclass
class Impression:
    impression_id: str
    user_id: str
    time: str
    history: list[str]                  # clicked news ids, oldest first (MIND order)
    candidates: list[str]               # shown news ids
    labels: list[int] | None            # 1 = clicked, 0 = not; None for unlabelled (test) impressions


@dataclass
class MindSplit:
    name: str                           # e.g. "MINDsmall_train"
    news: dict[str, News]
    impressions: list[Impression]
    stats: Counter = field(default_factory=Counter)
    source: str = ""                    # the split's folder or zip (named in errors)

    @property
    def labelled(self) -> bool:
        return all(imp.labels is not None for imp in self.impressions)

    def drop_unknown(self, known: Iterable[str] | None = None) -> MindSplit:
        """Remove news ids not in ``known`` (default: this split's news.tsv) from histories and candidates.

        Counts ``unknown_history_ids``, ``unknown_candidate_ids`` and ``impressions_dropped_no_candidates``
        (impressions left with no candidate) in ``stats``; logs a warning when anything was removed.
        """
        known_ids = set(self.news) if known is None else set(known)
        kept: list[Impression] = []
        for imp in self.impressions:
            hist = [n for n in imp.history if n in known_ids]
            self.stats["unknown_history_ids"] += len(imp.history) - len(hist)
            keep = [i for i, n in enumerate(imp.candidates) if n in known_ids]
            self.stats["unknown_candidate_ids"] += len(imp.candidates) - len(keep)
            if not keep:
                self.stats["impressions_dropped_no_candidates"] += 1
                continue
            labels = None if imp.labels is None else [imp.labels[i] for i in keep]
            kept.append(Impression(imp.impression_id, imp.user_id, imp.time, hist,
                                   [imp.candidates[i] for i in keep], labels))
        removed = {k: v for k, v in self.stats.items() if k.startswith(("unknown_", "impressions_dropped")) and v}
        if removed:
            log.warning("%s: news ids absent from news.tsv were skipped: %s", self.name, dict(removed))
        self.impressions = kept
        return self

    def summary(self) -> dict:
        """Counts describing the split (for logs and ``data_info``)."""
        hist_lens = [len(imp.history) for imp in self.impressions]
        return {"split": self.name, "news": len(self.news), "impressions": len(self.impressions),
                "users": len({imp.user_id for imp in self.impressions}), "labelled": self.labelled,
                "avg_history": round(sum(hist_lens) / max(len(hist_lens), 1), 2), **dict(self.stats)}


def _rows(lines: Iterable[str], n_fields: int, what: str) -> Iterator[list[str]]:
    """Tab-separated rows padded to ``n_fields`` (MIND lines may omit trailing empty fields)."""
    for lineno, row in enumerate(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
        if not row or row == [""]:
            continue
        if len(row) < 2:
            raise UserInputError(f"{what} line {lineno}: expected tab-separated fields, got {row[0][:60]!r}")
        yield row + [""] * (n_fields - len(row))


def read_news(lines: Iterable[str], *, what: str = "news.tsv") -> dict[str, News]:
    """Parse news.tsv lines -> {news_id: News}."""
    news = {}
    for r in _rows(lines, 8, what):
        news[r[0]] = News(news_id=r[0], category=r[1], subcategory=r[2], title=r[3], abstract=r[4])
    return news


def parse_impressions(field_: str, *, what: str = "behaviors.tsv") -> tuple[list[str], list[int] | None]:
    """``"N1-1 N2-0"`` -> (["N1", "N2"], [1, 0]); ``"N1 N2"`` (MINDlarge_test) -> (["N1", "N2"], None)."""
    ids, labels = [], []
    for tok in field_.split():
        nid, sep, lab = tok.rpartition("-")
        if sep and lab in ("0", "1"):
            ids.append(nid)
            labels.append(int(lab))
        else:
            ids.append(tok)
    if labels and len(labels) != len(ids):
        raise UserInputError(f"{what}: impression list mixes labelled and unlabelled ids: {field_[:80]!r}")
    return ids, (labels if labels else None)


def read_behaviors(lines: Iterable[str], *, what: str = "behaviors.tsv") -> tuple[list[Impression], Counter]:
    """Parse behaviors.tsv lines -> (impressions, stats with ``missing_history`` count)."""
    imps, stats = [], Counter()
    for r in _rows(lines, 5, what):
        hist = r[3].split()
        stats["missing_history"] += not hist
        cands, labels = parse_impressions(r[4], what=what)
        imps.append(Impression(impression_id=r[0], user_id=r[1], time=r[2], history=hist, candidates=cands,
                               labels=labels))
    return imps, stats


def split_path(root: str | Path, *, version: str, split: str) -> Path | None:
    """The folder or zip holding ``MIND<version>_<split>`` under ``root``, or None when absent."""
    if version not in MIND_VERSIONS:
        raise UserInputError(f"data.version={version!r} is not one of {list(MIND_VERSIONS)}")
    if split not in MIND_SPLITS:
        raise UserInputError(f"MIND split {split!r} is not one of {list(MIND_SPLITS)}")
    root = Path(root)
    for cand in (root / f"MIND{version}_{split}", root / "mind" / f"MIND{version}_{split}"):
        if (cand / "behaviors.tsv").is_file():
            return cand
        if cand.with_suffix(".zip").is_file():
            return cand.with_suffix(".zip")
    return None


def _open_member(src: Path, name: str) -> io.TextIOBase:
    if src.is_dir():
        return open(src / name, encoding="utf-8", newline="")
    zf = zipfile.ZipFile(src)
    members = [m for m in zf.namelist() if m == name or m.endswith("/" + name)]
    if not members:
        raise FileNotFoundError(f"{src} has no {name}; is it an official MIND archive?")
    return io.TextIOWrapper(zf.open(min(members, key=len)), encoding="utf-8", newline="")


def ensure_split(root: str | Path, *, version: str, split: str, download: bool = False,
                 urls: dict[str, str] | None = None) -> Path:
    """Locate (with ``download=True``: fetch the zip from ``urls[name]``) a split; one actionable line when absent."""
    found = split_path(root, version=version, split=split)
    if found is not None:
        return found
    name = f"MIND{version}_{split}"
    if version == "synthetic":
        raise DataUnavailableError(f"{name} not found under data root {root}: run "
                                   f"`python scripts/make_synthetic_mind.py --out {root}` "
                                   "(or keep data.synthetic.auto_generate=true)")
    if split not in MIND_PARTS[version]:
        raise DataUnavailableError(f"MIND{version} has no {split} split (official splits: "
                                   f"{list(MIND_PARTS[version])}); e.g. set data.test_split=dev")
    try:
        return ensure_file(Path(root) / f"{name}.zip", url=(urls or {}).get(name), allow_download=download)
    except DataUnavailableError as err:
        raise DataUnavailableError(f"{str(err).splitlines()[0]}; {mind_download_hint([name], root)}") from None


def load_split(root: str | Path, *, version: str, split: str, download: bool = False,
               drop_unknown: bool = True, urls: dict[str, str] | None = None) -> MindSplit:
    """Load one split (news + impressions); unknown news ids are dropped and counted unless ``drop_unknown=False``."""
    src = ensure_split(root, version=version, split=split, download=download, urls=urls)
    name = f"MIND{version}_{split}"
    with _open_member(src, "news.tsv") as f:
        news = read_news(f, what=f"{src}/news.tsv")
    if not news:
        raise UserInputError(f"{src}/news.tsv: 0 news rows; a MIND split needs >= 1 (news_id<TAB>category<TAB>"
                             f"subcategory"
                         f"<TAB>title<TAB>abstract...). Fix: re-extract or re-download {name}")
    with _open_member(src, "behaviors.tsv") as f:
        imps, stats = read_behaviors(f, what=f"{src}/behaviors.tsv")
    if not imps:
        raise UserInputError(f"{src}/behaviors.tsv: 0 impressions; a MIND split needs >= 1 (impression_id<TAB>user_id"
                         f"<TAB>time<TAB>history<TAB>N1-1 N2-0 ...). Fix: re-extract or re-download {name}")
    out = MindSplit(name=name, news=news, impressions=imps, stats=stats, source=str(src))
    if drop_unknown:
        out.drop_unknown()
        if not out.impressions:
            raise UserInputError(f"{src}/behaviors.tsv: all {len(imps)} impressions dropped: none of their candidate "
                                 f"news "
                             f"ids is in {src}/news.tsv ({len(news)} news); >= 1 impression must remain. Fix: use the "
                             f"news.tsv of the same split")
    return out
