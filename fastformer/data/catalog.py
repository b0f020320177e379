"""Which datasets the tables use, and whether each is present under a data root (``make data``, reproduce checks).

    st = check_dataset("imdb", root="../shared/data", preset="quick", fetch=False)
    st.present, st.path, st.rows, st.size, st.source, st.message

Nothing here knows file names or URLs of its own: each dataset's data config is composed from configs/ exactly as a
run of ``experiment=<dataset>/fastformer preset=<preset>`` sees it, and the loaders' own resolution code answers
where the files are (:func:`fastformer.data.classification_sources.resolve_sources`,
:func:`fastformer.data.mind.ensure_split`, :func:`fastformer.data.summarization.discover_files`). With
``fetch=True`` they download what is missing (when the config allows it); otherwise a missing dataset gives one line
naming the URL and the exact path to place the file at.
"""
from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastformer.data.download import DataUnavailableError

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# dataset key -> (experiment whose data config the tables use, what it feeds)
DATASETS: dict[str, tuple[str, str]] = {
    "amazon": ("amazon/fastformer", "Table 4, ablations"),
    "imdb": ("imdb/fastformer", "Table 4, ablations"),
    "mind_topics": ("mind_topics/fastformer", "Table 4, ablations"),
    "mind": ("mind_rec/fastformer", "Table 5"),
    "cnndm": ("cnndm/fastformer", "Table 6"),
    "pubmed": ("pubmed/fastformer", "Table 6"),
}
# experiment-name prefix (configs/sweep/*.yaml) -> dataset key; probe/* need no data
_PREFIX = {"amazon": "amazon", "imdb": "imdb", "mind_topics": "mind_topics", "mind_rec": "mind", "cnndm": "cnndm",
           "pubmed": "pubmed"}
HF_PAGE = "https://huggingface.co/datasets/{name}"


@dataclass
class DataStatus:
    dataset: str
    present: bool
    path: str = ""              # file/folder that is (or should be) there
    rows: int | None = None     # records found (None: not counted)
    size: int | None = None     # bytes on disk
    source: str = ""            # where it comes from (URL or description)
    message: str = ""           # missing: one line naming the URL and the exact path to place it at

    def row(self) -> list[str]:
        return [self.dataset, self.path, "present" if self.present else "MISSING",
                "—" if self.rows is None else f"{self.rows:,}", "—" if self.size is None else human_size(self.size),
                self.source]


def human_size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _size(paths: Sequence[Path]) -> int:
    total = 0
    for p in paths:
        p = Path(p)
        if p.is_dir():
            total += sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        elif p.exists():
            total += p.stat().st_size
    return total


# stage -> the sweep files (configs/sweep/<name>.yaml) it runs, in order; a stage not listed runs <stage>.yaml
STAGE_SWEEPS = {"ablations": ["ablations_reference", "ablations"], "probes": ["probes", "probes_ablations"],
                "probes_recall": ["probes_recall", "probes_recall_ablations"]}


def stage_sweeps(stage: str) -> list[str]:
    return STAGE_SWEEPS.get(stage, [stage])


def stage_datasets(stage: str) -> list[str]:
    """Dataset keys a sweep stage (its configs/sweep/*.yaml files) trains on, in first-use order."""
    from omegaconf import OmegaConf
    exps = []
    for name in stage_sweeps(stage):
        sweep = OmegaConf.load(PROJECT_ROOT / "configs" / "sweep" / f"{name}.yaml")
        exps += str(OmegaConf.select(sweep, "hydra.sweeper.params.experiment") or "").split(",")
    out: list[str] = []
    for exp in (e.strip() for e in exps):
        key = _PREFIX.get(exp.split("/")[0])
        if key and key not in out:
            out.append(key)
    return out


def data_config(dataset: str, *, preset: str = "quick", root: str | Path | None = None,
                overrides: Sequence[str] = ()) -> dict[str, Any]:
    """The resolved ``data`` node a run of ``<dataset>/fastformer`` under ``preset`` uses (``root``: data.root)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; known: {list(DATASETS)}")
    os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
    ovr = [f"experiment={DATASETS[dataset][0]}", f"preset={preset}", *overrides]
    if root is not None:
        ovr.append(f"data.root={Path(root).resolve()}")
    if GlobalHydra.instance().is_initialized():  # e.g. inside a @hydra.main app
        GlobalHydra.instance().clear()
    with initialize_config_dir(str(PROJECT_ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=ovr)
    d = OmegaConf.to_container(cfg.data, resolve=True)
    d["root"] = str(Path(d["root"]).resolve())
    return d


def _classification(dataset: str, d: dict, fetch: bool, count_rows: bool) -> DataStatus:
    from fastformer.data import classification_formats as readers
    from fastformer.data.classification import DataOptions
    from fastformer.data.classification_sources import AMAZON_URL, IMDB_URL, resolve_sources
    from fastformer.data.mind import MIND_PAGE
    o = DataOptions.from_cfg(d)
    o.download = bool(o.download and fetch)
    url = {"amazon": AMAZON_URL, "imdb": IMDB_URL, "mind_topics": MIND_PAGE}[dataset]
    try:
        files = resolve_sources(o)
    except (DataUnavailableError, FileNotFoundError) as err:
        msg = str(err).splitlines()[0].replace(" (or set data.download=true)", "")
        dest = re.search(r"place it at (\S+)", msg)  # (a MIND line names every zip and the folder itself)
        return DataStatus(dataset, False, dest.group(1) if dest else str(Path(o.root) / dataset.split("_")[0]),
                          source=url, message=msg)
    rows = None
    if count_rows:
        if dataset == "amazon":
            rows = len(readers.read_amazon(files, use_summary=False).texts)
        elif dataset == "imdb":
            rows = sum(1 for _ in _imdb_members(files[0]))
        else:
            rows = len(readers.read_mind_news(files).texts)
    shown = files[0] if len(files) == 1 else Path(os.path.commonpath([str(f) for f in files]))
    return DataStatus(dataset, True, str(shown), rows, _size(files), url if dataset != "mind_topics" else
                      f"MIND news.tsv ({len(files)} file(s))")


def _imdb_members(path: Path):
    import tarfile

    from fastformer.data.classification_formats import _IMDB_MEMBER
    if Path(path).is_dir():
        yield from (p for p in Path(path).rglob("*.txt") if _IMDB_MEMBER.search(p.as_posix()))
        return
    with tarfile.open(path, "r:*") as tar:
        for m in tar:
            if m.isfile() and _IMDB_MEMBER.search(m.name):
                yield m.name


def _mind(d: dict, fetch: bool, count_rows: bool) -> DataStatus:
    from fastformer.data.mind import MIND_PAGE, ensure_split, split_path
    root = Path(d["root"])
    if d.get("version", "synthetic") == "synthetic":
        if all(split_path(root, version="synthetic", split=d[k]) for k in ("train_split", "val_split", "test_split")):
            return DataStatus("mind", True, str(root / "MINDsynthetic_train"), source="synthetic MIND under the root")
        news = (d.get("synthetic") or {}).get("news_tsv", "auto")
        news = root / "mind" / "MINDsmall_sample" / "news.tsv" if news == "auto" else Path(news) if news else None
        if news is not None and news.is_file():
            rows = sum(1 for _ in open(news, "rb")) if count_rows else None
            return DataStatus("mind", True, str(news), rows, news.stat().st_size,
                              "synthetic MIND (generated per run) over these real MIND titles")
        return DataStatus("mind", True, "(generated)", source="synthetic MIND with synthetic titles (no news.tsv "
                          f"at {news}; put MINDsmall news.tsv there for real titles)")
    version, found, missing = d["version"], [], []
    for key in ("train_split", "val_split", "test_split"):
        split = d.get(key)
        if not split:
            continue
        try:
            found.append(ensure_split(root, version=version, split=split, download=bool(d.get("download")) and fetch,
                                      urls=d.get("urls")))
        except (DataUnavailableError, FileNotFoundError) as err:
            missing.append(str(err).splitlines()[0])
    url = (d.get("urls") or {}).get(f"MIND{version}_train") or MIND_PAGE
    if missing:
        return DataStatus("mind", False, str(root.resolve() / f"MIND{version}_train.zip"), source=url,
                          message="; ".join(missing))
    return DataStatus("mind", True, str(found[0]) if len(found) == 1 else str(root), None, _size(found),
                      f"MIND{version} ({len(found)} splits)")


def _summarization(dataset: str, d: dict, fetch: bool, count_rows: bool) -> DataStatus:
    from fastformer.data.summarization import HF_DATASETS, SOURCES, discover_files, download_hf, iter_records
    subdir = d["subdir"]
    folder = Path(d["root"]).resolve() / subdir
    name, config = HF_DATASETS[subdir]
    url = HF_PAGE.format(name=name)
    files = d.get("files")

    def missing(why: str) -> DataStatus:
        if files is not None and isinstance(files, str):
            hint = (f"{why}: place {folder / files} ({SOURCES[subdir]}; the quick preset reads that one file), or "
                    f"put the full splits from {url} ({config}) in {folder} and run with data.files=null")
        else:
            hint = f"{why}: download {url} ({config}): {SOURCES[subdir]}, into {folder}"
        return DataStatus(dataset, False, str(folder / files) if isinstance(files, str) else str(folder),
                          source=url, message=hint)

    try:
        found = discover_files(folder, files)
    except FileNotFoundError as err:
        if not (fetch and d.get("download") and files is None):
            return missing(str(err))
        try:
            download_hf(subdir, folder)
        except DataUnavailableError as err2:
            return missing(str(err2))
        found = discover_files(folder, files)
    absent = [p for p in found.values() if not p.is_file()]
    if absent:
        return missing(f"{absent[0]} not found")
    rows = None
    if count_rows:
        rows = 0
        for p in found.values():
            if p.name.lower().removesuffix(".gz").endswith(".parquet"):
                import pyarrow.parquet as pq
                rows += pq.ParquetFile(p).metadata.num_rows
            else:
                rows += sum(1 for _ in iter_records(p))
    paths = list(found.values())
    shown = paths[0] if len(paths) == 1 else folder
    return DataStatus(dataset, True, str(shown), rows, _size(paths), f"{url} ({config})")


def check_dataset(dataset: str, *, root: str | Path | None = None, preset: str = "quick", fetch: bool = False,
                  count_rows: bool = True, overrides: Sequence[str] = ()) -> DataStatus:
    """Present or missing (with the one-line message) for ``dataset`` as a ``preset`` run would read it."""
    try:
        d = data_config(dataset, preset=preset, root=root, overrides=overrides)
    except Exception as err:  # a bad override: the runs would fail the same way
        why = f"{type(err).__name__}: {err}".splitlines()[0]
        return DataStatus(dataset, False, message=f"cannot compose its data config ({why})")
    try:
        if dataset in ("amazon", "imdb", "mind_topics"):
            return _classification(dataset, d, fetch, count_rows)
        if dataset == "mind":
            return _mind(d, fetch, count_rows)
        return _summarization(dataset, d, fetch, count_rows)
    except (OSError, ValueError) as err:  # unreadable / corrupt file: report, never crash the table
        return DataStatus(dataset, False, str(d.get("root")), message=f"{dataset}: {type(err).__name__}: {err}"
                          .splitlines()[0])


def format_table(statuses: Sequence[DataStatus]) -> str:
    header = ["dataset", "path", "status", "rows", "size", "source"]
    rows = [header] + [s.row() for s in statuses]
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
