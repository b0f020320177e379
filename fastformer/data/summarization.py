"""CNN/DailyMail and PubMed summarization data in their distribution layouts -> ``{split: [Example]}``.

Layouts (detected per file from its fields):

* ``cnndm``  -- Hugging Face ``abisee/cnn_dailymail`` 3.0.0: ``article``, ``highlights`` (sentences separated by
  newlines), ``id``.
* ``ccdv``   -- Hugging Face ``ccdv/pubmed-summarization`` (also SumPubMed): ``article``, ``abstract``.
* ``cohan``  -- Cohan et al. 2018 original (armancohan/long-summarization): ``article_text`` (list of sentences),
  ``abstract_text`` (list of ``<S> ... </S>`` sentences, or one string).

File formats: ``.csv``, ``.jsonl``, ``.json`` (a list or JSON lines), ``.parquet``, each optionally ``.gz``.
Targets are normalised to one sentence per line (ROUGE-Lsum splits on newlines).

Which files are read (``files=``):
  * ``None``: files in ``<root>/<subdir>`` named ``train*``, ``val*``/``validation*``, ``test*``; if there are none
    and the folder holds exactly one data file, that file is split with ``seed``;
  * a file name (relative to the folder) -> seeded train/validation/test split of that file;
  * a mapping ``{train: ..., validation: ..., test: ...}``; missing validation/test are carved from train.
"""
from __future__ import annotations

import gzip
import json
import os
import random
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastformer.data.schema import options_from_cfg
from fastformer.errors import UserInputError

SPLITS = ("train", "validation", "test")
EXTENSIONS = (".csv", ".jsonl", ".json", ".parquet")
SOURCES = {  # where a user downloads each dataset (named in the missing-data error)
    "cnn_dailymail": "Hugging Face `abisee/cnn_dailymail` (config 3.0.0): save the train/validation/test splits as "
                     "train.csv, validation.csv, test.csv (or .jsonl/.parquet, gz allowed)",
    "pubmed": "Hugging Face `ccdv/pubmed-summarization` (config document: train/validation/test .parquet or "
              ".jsonl with article, abstract) or the Cohan et al. "
              "files train.txt/val.txt/test.txt (JSON lines, renamed .jsonl) from armancohan/long-summarization",
}
# Hub copies fetched by data.download=true / `make data`. Both are Parquet repos (ccdv/pubmed-summarization was
# converted from its loading script to Parquet configs `document` / `section`), so they load with datasets >= 3,
# which no longer runs loading scripts (checked with datasets 5.2.0; tests/test_data_catalog.py loads the same layout
# from a local copy).
HF_DATASETS = {"cnn_dailymail": ("abisee/cnn_dailymail", "3.0.0"), "pubmed": ("ccdv/pubmed-summarization", "document")}
_SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "valid", "val", "dev"), "test": ("test",)}
_TAG = re.compile(r"</?S>")
# sentence boundary: ., ! or ? (optionally followed by a closing quote/bracket) then whitespace
_SENT_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+")


@dataclass(kw_only=True)
class SummarizationOptions:
    """The summarization ``data`` config node (configs/data/cnndm.yaml, pubmed.yaml document each key); also the config
    schema's ``data`` keys for task=summarization (fastformer/config_schema.py), so the two cannot drift."""
    name: str
    root: str = field(default_factory=lambda: os.environ.get("DATA_ROOT", "data"))
    subdir: str = ""                            # folder under root: cnn_dailymail | pubmed
    files: Any = None                           # None | a file name | {train: .., validation: .., test: ..}
    sample_file: str | None = None              # the real sample the quick preset reads (data.files=${.sample_file})
    download: bool = False
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    max_train: int | None = None
    max_eval: int | None = None
    max_src_len: int = 2048
    max_tgt_len: int = 128
    vocab_size: int = 32000
    vocab_train_docs: int | None = None
    cache_dir: str | None = None

    @classmethod
    def from_cfg(cls, cfg: Any) -> SummarizationOptions:
        return options_from_cfg(cls, cfg, required=("name", "subdir"), example="cnndm")

    def load(self, layout: str = "auto") -> tuple[dict[str, list[Example]], dict[str, str]]:
        """:func:`load_summarization` with these options."""
        return load_summarization(root=self.root, subdir=self.subdir, files=self.files,
                                  val_fraction=float(self.val_fraction), test_fraction=float(self.test_fraction),
                                  split_seed=int(self.split_seed), layout=layout, download=bool(self.download),
                                  limit={"train": self.max_train, "validation": self.max_eval, "test": self.max_eval})


@dataclass(frozen=True)
class Example:
    source: str      # document text
    target: str      # reference summary, one sentence per line
    id: str = ""


def split_sentences(text: str) -> list[str]:
    """Newline- and punctuation-based sentence splitter (no NLTK data needed offline); keeps non-empty pieces."""
    out: list[str] = []
    for line in text.split("\n"):
        out.extend(s.strip() for s in _SENT_END.split(line) if s.strip())
    return out


def detect_layout(record: Mapping[str, Any], path: Path | str = "<record>") -> str:
    keys = set(record)
    if {"article", "highlights"} <= keys:
        return "cnndm"
    if {"article_text", "abstract_text"} <= keys:
        return "cohan"
    if {"article", "abstract"} <= keys:
        return "ccdv"
    raise UserInputError(f"{path}: unknown summarization layout with fields {sorted(keys)}; expected "
                         "article+highlights "
                     "(CNN/DM), article+abstract (ccdv PubMed) or article_text+abstract_text (Cohan)")


def _as_text(value: Any, sep: str) -> str:
    if isinstance(value, (list, tuple)):
        return sep.join(str(v) for v in value)
    return "" if value is None else str(value)


def to_example(record: Mapping[str, Any], layout: str) -> Example:
    """One raw record -> ``Example`` (target sentences on separate lines; Cohan ``<S>`` tags removed)."""
    if layout == "cnndm":
        source, target, rid = record["article"], record["highlights"], record.get("id", "")
        target = "\n".join(s.strip() for s in _as_text(target, "\n").split("\n") if s.strip())
    elif layout == "ccdv":
        source, rid = _as_text(record["article"], "\n"), record.get("article_id", record.get("id", ""))
        target = "\n".join(split_sentences(_TAG.sub("\n", _as_text(record["abstract"], "\n"))))
    elif layout == "cohan":
        source, rid = _as_text(record["article_text"], " "), record.get("article_id", "")
        abstract = record["abstract_text"]
        pieces = abstract if isinstance(abstract, (list, tuple)) else _TAG.split(str(abstract))
        target = "\n".join(p for p in (_TAG.sub(" ", str(x)).strip() for x in pieces) if p)
    else:
        raise UserInputError(f"unknown layout {layout!r}; expected one of ['cnndm', 'ccdv', 'cohan']")
    return Example(source=_as_text(source, " ").strip(), target=target, id=str(rid))


def iter_records(path: Path) -> Iterator[dict]:
    """Raw records of one csv/jsonl/json/parquet(.gz) file."""
    name = path.name.lower()
    stem = name[:-3] if name.endswith(".gz") else name
    if stem.endswith(".csv") or stem.endswith(".parquet"):
        import pandas as pd
        try:
            frame = pd.read_csv(path, keep_default_na=False) if stem.endswith(".csv") else pd.read_parquet(path)
        except pd.errors.EmptyDataError:  # a 0-byte .csv: no records (load_summarization names the file and count)
            return
        yield from frame.to_dict(orient="records")
        return
    if not (stem.endswith(".jsonl") or stem.endswith(".json")):
        raise UserInputError(f"{path}: unsupported file type; use one of {list(EXTENSIONS)} (optionally .gz)")
    opener = gzip.open if name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as f:
        head = f.read(1)
        while head.isspace():
            head = f.read(1)
        if head == "[" and stem.endswith(".json"):  # one JSON list
            yield from json.loads(head + f.read())
            return
        first = head + f.readline()
        for line in [first] + [ln for ln in f]:
            if line.strip():
                yield json.loads(line)


def read_file(path: Path | str, *, layout: str = "auto", limit: int | None = None,
              stats: dict | None = None) -> list[Example]:
    """All examples of one file (``limit``: stop after that many); empty documents/summaries are dropped.

    ``stats``, when given, receives ``records`` (records read) and ``dropped`` (those with an empty source or target).
    """
    path = Path(path)
    if not path.is_file():
        from fastformer.data.download import DataUnavailableError
        raise DataUnavailableError(f"summarization data file {path} does not exist")
    out: list[Example] = []
    records = 0
    try:
        for record in iter_records(path):
            records += 1
            if not isinstance(record, Mapping):
                raise UserInputError(f"{path}: record {records} is a {type(record).__name__}, not an object with "
                                     f"article/summary fields")
            lay = detect_layout(record, path) if layout == "auto" else layout
            ex = to_example(record, lay)
            if ex.source and ex.target:
                out.append(ex)
            if limit is not None and len(out) >= limit:
                break
    except UserInputError:
        raise
    except Exception as err:  # bad JSON line, not gzip, truncated stream, not UTF-8, unparsable CSV/Parquet, ...
        from fastformer.data.classification_formats import sniff
        why = f"{type(err).__name__}: {err}".splitlines()[0][:160]
        raise UserInputError(f"{path}: cannot be read after {records} records ({why}); the file holds "
                             f"{sniff(path)}; fix or replace it (csv/jsonl/json/parquet, optionally .gz)") from None
    if stats is not None:
        stats.update(records=records, dropped=records - len(out))
    return out


def _is_data_file(p: Path) -> bool:
    name = p.name.lower().removesuffix(".gz")
    return p.is_file() and name.endswith(EXTENSIONS)


def _split_of(p: Path) -> str | None:
    base = p.name.lower().split(".")[0]
    for split, aliases in _SPLIT_ALIASES.items():
        if base in aliases or any(base.startswith(a + "_") or base.startswith(a + "-") for a in aliases):
            return split
    return None


def discover_files(folder: Path, files: str | Mapping[str, str] | None) -> dict[str, Path]:
    """Resolve ``files`` (see module docstring) to ``{split or "all": path}``."""
    if isinstance(files, str):
        return {"all": folder / files}
    if isinstance(files, Mapping):
        bad = sorted(set(files) - set(SPLITS))
        if bad or "train" not in files:
            raise UserInputError(f"data.files keys must include 'train' and be among {list(SPLITS)}; got "
                                 f"{sorted(files)}")
        return {k: folder / v for k, v in files.items() if v}
    candidates = sorted(p for p in folder.iterdir() if _is_data_file(p)) if folder.is_dir() else []
    named = {}
    for p in candidates:
        split = _split_of(p)
        if split is not None and split not in named:
            named[split] = p
    if "train" in named:
        return named
    if len(candidates) == 1:
        return {"all": candidates[0]}
    if not candidates:
        raise FileNotFoundError(f"no summarization data files in {folder}")
    raise UserInputError(f"{folder} holds several data files and none is named train*: "
                     f"{[p.name for p in candidates]}; set data.files to one of them (seeded split) or to "
                     "{train: ..., validation: ..., test: ...}")


def download_hf(subdir: str, folder: Path) -> None:
    """Fetch the official Hugging Face copy of ``subdir`` into ``folder/{train,validation,test}.parquet``."""
    from fastformer.data.download import DataUnavailableError, network_down
    if subdir not in HF_DATASETS:
        raise DataUnavailableError(f"no download source known for {subdir!r}; put the files in {folder}")
    name, config = HF_DATASETS[subdir]
    down = network_down()
    if down:
        raise DataUnavailableError(f"could not download Hugging Face {name} ({config}) (not tried: {down}); "
                                   f"{SOURCES[subdir]}, into {folder}")
    cache = folder / ".hf_cache"  # datasets' download + Arrow cache, removed once the Parquet files are written
    try:
        import shutil

        import datasets

        from fastformer.utils import atomic_path, library_progress
        with library_progress() as quiet:
            if quiet:  # off a terminal: one line per step instead of the Hub's tqdm frames
                print(f"downloading Hugging Face {name} ({config}) into {folder} ...", file=sys.stderr, flush=True)
            dd = datasets.load_dataset(name, config, cache_dir=str(cache))
            folder.mkdir(parents=True, exist_ok=True)
            for split, ds in dd.items():
                with atomic_path(folder / f"{split}.parquet", suffix=".part") as tmp:
                    ds.to_parquet(str(tmp))
                if quiet:
                    print(f"  wrote {folder / f'{split}.parquet'} ({len(ds):,} rows)", file=sys.stderr, flush=True)
        del dd
        shutil.rmtree(cache, ignore_errors=True)
    except Exception as err:  # offline, hub errors, disk errors: one actionable line
        reason = f"{type(err).__name__}: {err}".splitlines()[0][:200]
        raise DataUnavailableError(f"could not download Hugging Face {name} ({config}) ({reason}); "
                                   f"{SOURCES[subdir]}, into {folder}") from err


def seeded_split(examples: list[Example], *, val_fraction: float, test_fraction: float,
                 seed: int) -> dict[str, list[Example]]:
    """Shuffle with ``seed`` and cut into train/validation/test (each non-empty when there are >= 3 examples)."""
    if not 0 <= val_fraction < 1 or not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise UserInputError(f"data.val_fraction={val_fraction}, data.test_fraction={test_fraction} must be in [0, 1) "
                         "and sum to < 1")
    order = list(range(len(examples)))
    random.Random(seed).shuffle(order)
    n = len(order)
    n_test = max(1, round(n * test_fraction)) if test_fraction > 0 and n >= 3 else 0
    n_val = max(1, round(n * val_fraction)) if val_fraction > 0 and n >= 3 else 0
    pick = [examples[i] for i in order]
    return {"test": pick[:n_test], "validation": pick[n_test:n_test + n_val], "train": pick[n_test + n_val:]}


def docs_needed(val_fraction: float, test_fraction: float) -> int | None:
    """Fewest documents for which :func:`seeded_split` leaves train and each split with a fraction > 0 non-empty."""
    for n in range(3, 100_000):
        n_test = max(1, round(n * test_fraction)) if test_fraction > 0 else 0
        n_val = max(1, round(n * val_fraction)) if val_fraction > 0 else 0
        if n - n_test - n_val >= 1:
            return n
    return None


def _empty_split_error(split: str, *, folder: Path, found: dict[str, Path], counts: dict[str, dict],
                       splits: dict[str, list[Example]], limit: dict, val_fraction: float,
                       test_fraction: float) -> UserInputError:
    """The one-line error for an empty split: the file, how many usable documents it had, how many were needed."""
    got = ", ".join(f"{s}={len(splits[s])}" for s in SPLITS)
    if limit.get(split) is not None and int(limit[split]) < 1:
        key = "max_train" if split == "train" else "max_eval"
        return UserInputError(f"{folder}: data.{key}={limit[split]} leaves {split} empty ({got}); every split needs "
                              f">= 1 "
                          f"document: set it >= 1, or null for no cap")
    if split in found:  # the split's own file
        path, c = found[split], counts[split]
        what = ("holds no records" if not c["records"] else
                f"has 0 usable {split} documents (all {c['records']} records have an empty source or target)")
        carve = f", or leave {split} out of data.files to carve it from train" if split != "train" else ""
        return UserInputError(f"{path}: the file {what}; every split needs >= 1 document. Fix: fill the file with "
                          f"article + summary records (see the layouts in fastformer/data/summarization.py){carve}")
    src = "all" if "all" in found else "train"  # carved from this file
    path, c = found[src], counts[src]
    fractions = {"validation": val_fraction, "test": test_fraction} if src == "all" else {
        s: (val_fraction if s == "validation" else test_fraction) for s in ("validation", "test") if s not in found}
    zero = [s for s, f in fractions.items() if f <= 0]
    if split in zero:
        key = "val_fraction" if split == "validation" else "test_fraction"
        return UserInputError(f"{path}: data.{key}=0 leaves {split} empty ({got}); set data.{key} > 0, or give a "
                          f"{split} file in data.files")
    need = docs_needed(fractions.get("validation", 0.0), fractions.get("test", 0.0))
    n = c["records"] - c["dropped"]
    keys = ", ".join(f"data.{'val' if s == 'validation' else 'test'}_fraction={f}" for s, f in fractions.items())
    return UserInputError(f"{path}: only {n} usable document{'s' * (n != 1)} ({c['dropped']} of {c['records']} records "
                      f"dropped for an empty source or target), but {keys} need at least {need} documents for "
                      f"{'/'.join(['train', *fractions])} to get >= 1 each (got {got}). Fix: add documents to the "
                      f"file, or give validation/test files in data.files")


def load_summarization(*, root: str | Path, subdir: str, files: str | Mapping[str, str] | None = None,
                       val_fraction: float = 0.1, test_fraction: float = 0.1, split_seed: int = 0,
                       limit: Mapping[str, int | None] | None = None, layout: str = "auto",
                       download: bool = False) -> tuple[dict[str, list[Example]], dict[str, str]]:
    """Load ``{train, validation, test}`` examples and a description of the files used.

    ``limit`` caps each split after splitting (e.g. ``{train: 300}`` for quick runs; the cap keeps a seeded random
    subset because splits are shuffled). ``download``: fetch the Hugging Face copy when the folder has no data files.
    Returns ``(splits, provenance)``.
    """
    from fastformer.data.download import DataUnavailableError
    folder = Path(root) / subdir
    try:
        found = discover_files(folder, files)
    except FileNotFoundError as err:
        if not download or files is not None:
            hint = SOURCES.get(subdir, "the dataset's official source")
            raise DataUnavailableError(f"{err}. Download {hint} into {folder} (or set DATA_ROOT / data.root"
                                       f"{'' if download else ', or data.download=true'})") from None
        download_hf(subdir, folder)
        found = discover_files(folder, files)
    for p in found.values():
        if not p.is_file():
            raise DataUnavailableError(f"data file {p} does not exist; fix data.files or put it there "
                                    f"({SOURCES.get(subdir, '')})")
    limit = dict(limit or {})
    counts: dict[str, dict] = {k: {} for k in found}  # per file: records read, dropped (for the empty-split error)
    if "all" in found:
        splits = seeded_split(read_file(found["all"], layout=layout, stats=counts["all"]), val_fraction=val_fraction,
                              test_fraction=test_fraction, seed=split_seed)
        how = f"seeded split (seed {split_seed}, val {val_fraction}, test {test_fraction}) of {found['all'].name}"
    else:
        splits = {s: read_file(p, layout=layout, stats=counts[s]) for s, p in found.items()}
        missing = [s for s in SPLITS if s not in splits]
        if missing:
            carved = seeded_split(splits["train"], val_fraction=val_fraction if "validation" in missing else 0.0,
                                  test_fraction=test_fraction if "test" in missing else 0.0, seed=split_seed)
            splits.update({s: carved[s] for s in ["train", *missing]})
        how = ", ".join(f"{s}={p.name}" for s, p in found.items()) + (
            f"; {missing} carved from train (seed {split_seed})" if missing else "")
        if limit:  # file order is not random: shuffle before capping so the subset is a seeded random sample
            for s in splits:
                random.Random(split_seed).shuffle(splits[s])
    for s in SPLITS:
        if limit.get(s) is not None:
            splits[s] = splits[s][: int(limit[s])]
    for s in SPLITS:
        if not splits[s]:
            raise _empty_split_error(s, folder=folder, found=found, counts=counts, splits=splits, limit=limit,
                                     val_fraction=val_fraction, test_fraction=test_fraction)
    info = {"files": how, "sizes": ", ".join(f"{s}={len(splits[s])}" for s in SPLITS)}
    return splits, info
