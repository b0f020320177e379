"""Shared table machinery: collect run outputs, mean ± std over seeds, paper value beside, atomic md/csv writes.

A run dir holds ``metrics.json`` (finished) or ``failed.json`` (the job raised; written by scripts/train.py). Missing
cells are shown as "—" and failed ones as "failed", never as 0.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from fastformer.utils import atomic_write_text, git_sha

MISSING, FAILED = "—", "failed"


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


def load_runs(root: str | Path, task: str | None = None) -> list[Run]:
    """All finished and failed runs below ``root`` (optionally only those of ``task``)."""
    runs = []
    root = Path(root)
    if not root.exists():
        return runs
    for name, status in (("metrics.json", "ok"), ("failed.json", "failed")):
        for p in sorted(root.rglob(name)):
            if status == "failed" and (p.parent / "metrics.json").exists():
                continue  # a later attempt in the same dir succeeded
            data = json.loads(p.read_text())
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


def write_outputs(stem: str | Path, markdown: str, csv_header: Sequence[str], csv_rows: Sequence[Sequence[Any]]) -> None:
    """Write ``<stem>.md`` and ``<stem>.csv`` atomically."""
    stem = Path(stem)
    atomic_write_text(stem.with_suffix(".md"), markdown.rstrip() + "\n")
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(csv_header)
    w.writerows(csv_rows)
    atomic_write_text(stem.with_suffix(".csv"), buf.getvalue())
