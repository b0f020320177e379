"""Writers: ``efficiency.csv`` (one row per mixer x length x mode) and ``efficiency.md`` (header, paper-style tables,
Fastformer-relative ratios next to the paper's Figure 2). Every write is atomic (temp file + ``os.replace``)."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence

from fastformer.bench.grid import Row
from fastformer.bench.paper import FIGURE2, PAPER_NAMES, paper_ratio
from fastformer.utils import atomic_write_text

CSV_FIELDS = ("mixer", "mode", "seq_len", "batch_size", "status", "seconds", "cpu_seconds", "tokens_per_s",
              "peak_mem_mib", "iters", "note", "kwargs")


def write_csv(rows: Sequence[Row], path) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        d = r.as_dict()
        for k in ("seconds", "cpu_seconds", "tokens_per_s", "peak_mem_mib"):
            d[k] = "" if math.isnan(d[k]) else f"{d[k]:.6g}"
        w.writerow({k: d[k] for k in CSV_FIELDS})
    atomic_write_text(path, buf.getvalue())


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.3g}"


def _short(status: str) -> str:
    return status.split(":")[0]  # "timeout: > 3 s" -> "timeout", "skipped: > budget" -> "skipped"


def _index(rows: Sequence[Row]) -> dict[tuple[str, str, int], Row]:
    return {(r.mixer, r.mode, r.seq_len): r for r in rows}


def _labels(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(r.mixer for r in rows))


def _table(rows: Sequence[Row], mode: str, value) -> list[str]:
    labels, idx = _labels(rows), _index(rows)
    lengths = sorted({(r.seq_len, r.batch_size) for r in rows if r.mode == mode})
    if not lengths:
        return []
    out = ["| N/B | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for n, b in lengths:
        cells = []
        for lab in labels:
            r = idx.get((lab, mode, n))
            cells.append("—" if r is None else value(r) if r.status == "ok" else _short(r.status))
        out.append(f"| {n}/{b} | " + " | ".join(cells) + " |")
    return out


def _base(label: str) -> str:
    return label.split("[")[0]


def reference_label(rows: Sequence[Row]) -> str | None:
    """The Fastformer curve that ratios are taken against: plain ``fastformer`` if run, else its first variant."""
    labels = _labels(rows)
    return "fastformer" if "fastformer" in labels else next((lab for lab in labels if _base(lab) == "fastformer"), None)


def ratio_rows(rows: Sequence[Row]) -> list[dict]:
    """(mode, N, mixer label, ours = t/t_fastformer, paper ratio) for every paper-digitised point we ran."""
    ref, idx, out = reference_label(rows), _index(rows), []
    if ref is None:
        return out
    for lab in _labels(rows):
        if _base(lab) not in PAPER_NAMES.values() or _base(lab) == _base(ref):  # the paper has no fused Fastformer
            continue
        for mode, by_n in FIGURE2.items():
            for n in by_n:
                r, f = idx.get((lab, mode, n)), idx.get((ref, mode, n))
                if r is None or f is None:
                    continue
                both = r.status == "ok" and f.status == "ok"
                ours = r.seconds / f.seconds if both else None
                ours_cpu = r.cpu_seconds / f.cpu_seconds if both and not math.isnan(r.cpu_seconds) else None
                status = r.status if r.status != "ok" else f"{ref} {_short(f.status)}"
                out.append(dict(mode=mode, seq_len=n, mixer=lab, ours=ours, ours_cpu=ours_cpu, status=status,
                                paper=paper_ratio(mode, n, _base(lab))))
    return out


def _geo(xs: Sequence[float]) -> float:
    return math.exp(sum(math.log(x) for x in xs) / len(xs))


def headline(rows: Sequence[Row]) -> list[str]:
    """Per mixer: geometric mean over the paper points where both ratios exist, ours vs paper."""
    by_mixer: dict[str, list[dict]] = {}
    for d in ratio_rows(rows):
        if d["ours"] is not None and d["paper"] is not None:
            by_mixer.setdefault(d["mixer"], []).append(d)
    ref, out = reference_label(rows), []
    for lab, v in by_mixer.items():
        cpu = [d["ours_cpu"] for d in v if d["ours_cpu"] is not None]
        cpu_txt = f" (process CPU time {_geo(cpu):.2f}x)" if len(cpu) == len(v) else ""
        points = ", ".join(f"{d['mode'][:3]} N={d['seq_len']}" for d in v)
        out.append(f"- {lab} / {ref}: ours {_geo([d['ours'] for d in v]):.2f}x{cpu_txt}, paper "
                   f"{_geo([d['paper'] for d in v]):.2f}x (geometric mean over {len(v)} paper point(s): {points})")
    return out


def render_markdown(rows: Sequence[Row], header: Sequence[tuple[str, str]], *, comment: str = "") -> str:
    lines = ["# Efficiency: time per mixer layer (paper Figure 2)", ""]
    if comment:
        lines += [f"<!-- {comment} -->", ""]
    lines += [f"- **{k}**: {v}" for k, v in header] + [""]
    lines += ["Cells: median milliseconds per layer per batch (one mixer layer, projections included, no FFN); "
              "`OOM`, `timeout` (one call took longer than the budget), `skipped` (a shorter length already exceeded "
              "the budget), `unavailable` (cannot run on this device, e.g. the fused Triton kernels off CUDA), "
              "`error` -- details in efficiency.csv.", ""]
    for mode in ("inference", "training"):
        t = _table(rows, mode, lambda r: _ms(r.seconds))
        if t:
            lines += [f"## {mode.capitalize()}: ms per layer per batch", ""] + t + [""]
    if any(not math.isnan(r.cpu_seconds) for r in rows):
        for mode in ("inference", "training"):
            t = _table(rows, mode, lambda r: _ms(r.cpu_seconds))
            if t:
                lines += [f"## {mode.capitalize()}: process CPU ms per layer per batch", ""] + t + [""]
    for mode in ("inference", "training"):
        t = _table(rows, mode, lambda r: "n/a" if math.isnan(r.peak_mem_mib) else f"{r.peak_mem_mib:.4g}")
        if t:
            lines += [f"## {mode.capitalize()}: peak memory increase (MiB)", ""] + t + [""]
    ref, rr = reference_label(rows), ratio_rows(rows)
    lines += ["## Ratios to Fastformer: ours vs the paper's Figure 2", ""]
    if not rr:
        lines += [f"No paper-digitised point (N in {sorted(FIGURE2['inference'])}) was run for a paper mixer "
                  f"together with Fastformer (reference: {ref}).", ""]
    else:
        lines += [f"Cells: time(mixer) / time({ref}) at the same N, **ours / paper** (paper batch = 65,536/N; ours = "
                  "tokens per batch / N). Paper values digitised by eye from the log-scale plot (about +-10%), see "
                  "PAPER.md section 2.5; `—` = no paper curve there.", ""]
        lines += _ratio_table(rr, "ours", "wall-clock time")
        if any(d["ours_cpu"] is not None for d in rr):
            lines += _ratio_table(rr, "ours_cpu", "process CPU time (robust to other jobs on a shared CPU)")
    head = headline(rows)
    if head:
        lines += ["Headline (geometric means of the ratios above):", ""] + head + [""]
    return "\n".join(lines)


def _ratio_table(rr: Sequence[dict], key: str, what: str) -> list[str]:
    mixers = list(dict.fromkeys(d["mixer"] for d in rr))
    points = list(dict.fromkeys((d["mode"], d["seq_len"]) for d in rr))
    cell = {(d["mode"], d["seq_len"], d["mixer"]): d for d in rr}
    out = [f"Ratios from {what}:", "", "| mode | N | " + " | ".join(mixers) + " |", "|---|---|" + "---|" * len(mixers)]
    for mode, n in points:
        cells = []
        for m in mixers:
            d = cell.get((mode, n, m))
            if d is None:
                cells.append("—")
                continue
            ours = f"{d[key]:.2f}" if d[key] is not None else _short(d["status"])
            cells.append(f"{ours} / " + (f"{d['paper']:.2f}" if d["paper"] is not None else "—"))
        out.append(f"| {mode} | {n} | " + " | ".join(cells) + " |")
    return out + [""]


def write_markdown(rows: Sequence[Row], path, header: Sequence[tuple[str, str]], *, comment: str = "") -> None:
    atomic_write_text(path, render_markdown(rows, header, comment=comment))
