"""Figure 2 style plot: two panels (Inference, Training), log-scale y, x = "Sequence Length/Batch Size"."""
from __future__ import annotations

from collections.abc import Sequence

from fastformer.bench.grid import Row
from fastformer.utils import atomic_path


def plot_efficiency(rows: Sequence[Row], path, *, title: str = "", clock: str = "wall") -> None:
    """Write the figure atomically to ``path`` (png), y = ``clock`` time ("wall" or "cpu" = process CPU time). Points
    that are not ``ok`` are left out; a curve that ran out of memory or budget ends with an ``x`` marker at its last
    measured value, labelled with the status."""
    if clock not in ("wall", "cpu"):
        raise ValueError(f"bench plot_clock={clock!r} is not wall or cpu")
    attr = "seconds" if clock == "wall" else "cpu_seconds"
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = list(dict.fromkeys(r.mixer for r in rows))
    ticks = sorted({(r.seq_len, r.batch_size) for r in rows})
    pos = {n: i for i, (n, _) in enumerate(ticks)}
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharex=True)
    for ax, mode in zip(axes, ("inference", "training")):
        for i, lab in enumerate(labels):
            pts = sorted((r for r in rows if r.mixer == lab and r.mode == mode), key=lambda r: r.seq_len)
            ok = [r for r in pts if r.status == "ok"]
            if not ok:
                continue
            line, = ax.plot([pos[r.seq_len] for r in ok], [getattr(r, attr) for r in ok], marker="o", markersize=4,
                            label=lab, color=f"C{i % 10}")
            failed = [r for r in pts if r.status != "ok" and r.seq_len > ok[-1].seq_len]
            if failed:
                last = (pos[ok[-1].seq_len], getattr(ok[-1], attr))
                ax.plot(*last, marker="x", markersize=9, color=line.get_color())
                ax.annotate(f"{failed[0].status.split(':')[0]} at N={failed[0].seq_len}", last, fontsize=7,
                            xytext=(4, 4), textcoords="offset points", color=line.get_color())
        ax.set_yscale("log")
        ax.set_title(f"({'ab'[mode == 'training']}) {mode.capitalize()}")
        ax.set_xticks(range(len(ticks)))
        ax.set_xticklabels([f"{n}/{b}" for n, b in ticks], rotation=45, ha="right", fontsize=8)
        ax.set_xlabel("Sequence Length/Batch Size")
        ax.set_ylabel(f"{mode.capitalize()} Time Per Layer (s{', process CPU time' if clock == 'cpu' else ''})")
        ax.grid(True, which="both", alpha=0.3)
    handles, names = axes[0].get_legend_handles_labels()
    if not handles:
        handles, names = axes[1].get_legend_handles_labels()
    if handles:
        fig.legend(handles, names, loc="upper center", ncol=min(len(names), 10), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, y=0.02, fontsize=8)
    fig.tight_layout(rect=(0, 0.04, 1, 0.92))
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=130)
    finally:
        plt.close(fig)
