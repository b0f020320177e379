"""Shared table machinery: collect run outputs, mean ± std over seeds, paper value beside, atomic md/csv writes.

A run dir holds ``metrics.json`` (finished) or ``failed.json`` (the job raised; written by scripts/train.py). Missing
cells are shown as "—" and failed ones as "failed", never as 0.

No builder replaces a table that has finished cells with one that has fewer (a missing data root or a crashed sweep
must never wipe what results/ shows): :func:`write_outputs` counts the finished cells of the csv it would replace and
of the new one, and raises :class:`TableRegressionError` (writing nothing) when the new one has fewer, unless
``FORCE`` is set (``scripts/make_tables.py --force``, or ``FASTFORMER_FORCE_TABLES=1``).
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from fastformer.utils import atomic_write_text, git_sha

MISSING, FAILED = "—", "failed"
FORCE = False  # True: write_outputs replaces a table even when the new one has fewer finished cells


class TableRegressionError(RuntimeError):
    """The new table has fewer finished cells than the one it would replace (nothing was written)."""


@dataclass
class Run:
    path: Path
    status: str  # "ok" | "failed"
    data: dict[str, Any]

    def get(self, dotted: str, default=None):
        cur: Any = self.data
        for part in dotted.split("."):
            if not isinstance(cur, dict) or part not in cur:
                return default
            cur = cur[part]
        return cur


ROW_FIELDS = ("task", "dataset", "mixer", "row")  # the table row of a run: what every builder selects and groups by


def load_runs(root: str | Path, task: str | None = None) -> list[Run]:
    """All finished and failed runs below ``root`` (optionally only those of ``task``).

    Every record has the row fields :data:`ROW_FIELDS` (None where unknown): ``task``, ``dataset`` (cfg.data.name),
    ``mixer`` (cfg.model.mixer.name) and ``row`` (cfg.row: the table row, the mixer or the name an experiment or
    ablation file sets), as scripts/train.py writes them (the records written before those fields existed
    were migrated in place on 2026-12-07)."""
    runs = []
    root = Path(root)
    if not root.exists():
        return runs
    for name, status in (("metrics.json", "ok"), ("failed.json", "failed")):
        for p in sorted(root.rglob(name)):
            if status == "failed" and (p.parent / "metrics.json").exists():
                continue  # a later attempt in the same dir succeeded
            data = json.loads(p.read_text())
            for k in ROW_FIELDS:
                data.setdefault(k, None)
            if task is None or data.get("task") == task:
                runs.append(Run(p.parent, status, data))
    return runs


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0 if self.values else math.nan

    def fmt(self, digits: int = 2) -> str:
        if not self.values:
            return FAILED if self.failed else MISSING
        s = f"{self.mean:.{digits}f} ± {self.std:.{digits}f}" if self.n > 1 else f"{self.mean:.{digits}f}"
        return s + (f" ({len(self.failed)} failed)" if self.failed else "")


def group(runs: Iterable[Run], key: Callable[[Run], Any], metric: str) -> dict[Any, Cell]:
    """key(run) -> Cell of ``metric`` (dotted path into metrics.json) over seeds; failed runs counted per cell."""
    cells: dict[Any, Cell] = {}
    for r in runs:
        c = cells.setdefault(key(r), Cell())
        if r.status == "failed":
            c.failed.append(str(r.get("error", "error")))
        else:
            v = r.get(metric)
            if v is not None and not (isinstance(v, float) and math.isnan(v)):
                c.values.append(float(v))
    return cells


def fmt_delta(ours: Cell | None, paper: float | None, digits: int = 2) -> str:
    if ours is None or not ours.values or paper is None:
        return MISSING
    return f"{ours.mean - paper:+.{digits}f}"


def fmt_num(v: float | None, digits: int = 2) -> str:
    return MISSING if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def provenance(runs: Sequence[Run]) -> str:
    """One line naming devices, torch versions, precisions and the code versions the runs came from."""
    def uniq(key):
        return ", ".join(sorted({str(r.get(key)) for r in runs if r.status == "ok" and r.get(key) is not None})) or "—"
    return (f"device: {uniq('device')}; torch {uniq('torch')}; precision {uniq('precision')}; run code "
            f"{uniq('git_sha')}; table generated {date.today().isoformat()} at {git_sha()}")


def _is_number(v: Any) -> bool:
    if v is None or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def count_finished(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Finished cells of a table's csv: rows with a finite value in some ``*_mean`` column (else ``status == ok``)."""
    header = list(header)
    means = [i for i, h in enumerate(header) if str(h).endswith("_mean")]
    status = header.index("status") if "status" in header else None
    n = 0
    for row in rows:
        row = list(row)
        if means:
            n += any(i < len(row) and _is_number(row[i]) for i in means)
        elif status is not None:
            n += status < len(row) and str(row[status]) == "ok"
    return n


def count_finished_csv(path: str | Path) -> int:
    """:func:`count_finished` of an existing csv (0 when absent or unreadable)."""
    try:
        with open(path, newline="") as f:
            table = list(csv.reader(f))
    except OSError:
        return 0
    return count_finished(table[0], table[1:]) if table else 0


def force_enabled() -> bool:
    return FORCE or os.environ.get("FASTFORMER_FORCE_TABLES", "") not in ("", "0", "false")


def table_stem(name: str, preset: str) -> str:
    """results/ file stem of a table built for ``preset``: the quick preset keeps the historical names
    (``table4_classification``), every other preset adds its name (``table4_classification_cpu``), so presets never
    overwrite each other's tables."""
    return name if preset == "quick" else f"{name}_{preset}"


def write_outputs(stem: str | Path, markdown: str, csv_header: Sequence[str],
                  csv_rows: Sequence[Sequence[Any]]) -> None:
    """Write ``<stem>.md`` and ``<stem>.csv`` atomically; refuse (TableRegressionError) to lose finished cells."""
    stem = Path(stem)
    old, new = count_finished_csv(stem.with_suffix(".csv")), count_finished(csv_header, csv_rows)
    if new < old and not force_enabled():
        raise TableRegressionError(
            f"kept {stem.with_suffix('.md')}: it has {old} finished cell(s) and the rebuilt table only {new} (missing "
            f"data or runs?); nothing written. Rebuild with `scripts/make_tables.py --force` to replace it anyway")
    atomic_write_text(stem.with_suffix(".md"), markdown.rstrip() + "\n")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(csv_header)
    w.writerows(csv_rows)
    atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())
