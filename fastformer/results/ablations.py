"""Ablations: paper Figures 3 (interaction) and 4 (parameter sharing) + the review's redundancy rows.

Reads the classification runs of row ``fastformer`` (the full model = product interaction, qv+layer sharing; the
runs of ``<ds>/fastformer``), ``fastformer_official``, ``pooling_baseline`` and the ablation rows (the ``row`` of
configs/ablation/<name>.yaml, applied as ``experiment=<ds>/fastformer ablation=<name>``), by their recorded dataset
and row; rows, labels and the paper's values are in fastformer/results/rows.py (``ABLATION_*``). Writes
``results/ablations.{md,csv,png}``: ours (mean ± std over seeds) beside the paper's bars (PAPER.md §2.6); the
redundancy table adds parameter counts and Δ vs the full model, paired by seed (mean of per-seed differences). Where
the runs recorded per-item test correctness, every Δ carries a 95% paired-bootstrap interval, and a last section gives
Figures 3-4 as differences beside the paper's, one verdict line per dataset (judged at >= 3 seeds in both rows) and a
Bonferroni-corrected line, as Table 4 does.

A cell whose mean test accuracy sits at the majority class of its split (:func:`degenerate`: within the seed std, at
least :data:`DEGENERATE_TOL` points, of ``test.majority_acc`` or ``baselines.majority_acc``) is a model that predicts
one class: the table marks it with :data:`MARK` and a footnote, the figure draws its bar hatched and grey.
"""
from __future__ import annotations

from pathlib import Path

from fastformer.results.common import (
    MISSING,
    Cell,
    Run,
    fmt_num,
    group,
    load_runs,
    md_table,
    provenance,
    table_stem,
    write_outputs,
)
from fastformer.results.rows import (
    ABLATION_DATASETS as DATASETS,
    ABLATION_FIGURES as FIGURES,
    ABLATION_PAPER as PAPER,
    ABLATION_REDUNDANCY as REDUNDANCY,
    ablation_row,
)
from fastformer.results.stats import (
    MIN_SEEDS,
    Delta,
    family_line,
    is_judged,
    items_by_row,
    row_delta,
    verdict_line,
)

MAJORITY_KEYS = ("test.majority_acc", "baselines.majority_acc")  # most frequent test class; train majority on test
DEGENERATE_TOL = 0.5  # points: the tolerance when n = 1 (and the least one when the seed std is smaller)
MARK = "†"
FIGURE_VARIANTS = {k for rows in FIGURES.values() for k, _ in rows if k != "full"}
#: every variant judged against the full model (both figures, then the redundancy rows) -> its display name
VARIANT_NAMES = {k: n for rows in FIGURES.values() for k, n in rows if k != "full"} | dict(REDUNDANCY[1:])
DEGENERATE_LABEL = "at majority class (degenerate: the model predicts one class)"


def _key(r: Run) -> tuple[str, str] | None:
    """-> (dataset, row): ``full`` / ``official`` for the Table 4 Fastformer runs, else the ablation variant."""
    row = ablation_row(r.get("row"))
    return (r.get("dataset"), row) if row else None


def majority_refs(runs: list[Run]) -> dict[str, list[float]]:
    """dataset -> the distinct majority-class accuracies (%) its finished runs record (:data:`MAJORITY_KEYS`, in that
    order: the most frequent test class, then the train majority class scored on test; properties of the split)."""
    refs: dict[str, list[float]] = {}
    for r in runs:
        if r.status != "ok" or not _key(r):
            continue
        for k in MAJORITY_KEYS:
            v = r.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v == v:
                vals = refs.setdefault(_key(r)[0], [])
                if all(abs(float(v) - u) > 1e-6 for u in vals):
                    vals.append(float(v))
    return refs


def degenerate(cell: Cell | None, refs: list[float]) -> bool:
    """The cell's mean accuracy is within max(seed std, :data:`DEGENERATE_TOL`) points of a majority-class accuracy
    of its split: the models behind it (on average) predict one class."""
    if cell is None or not cell.values or not refs:
        return False
    tol = max(cell.std if cell.n > 1 else 0.0, DEGENERATE_TOL) + 1e-9
    return any(abs(cell.mean - m) <= tol for m in refs)


def _footnote(refs: dict[str, list[float]]) -> str:
    maj = "; ".join(f"{name} {' / '.join(f'{fmt_num(v)}%' for v in refs[ds])}" for ds, name in DATASETS.items()
                    if ds in refs)
    return (f"{MARK} {DEGENERATE_LABEL}: mean test accuracy within max(seed std, {DEGENERATE_TOL}) points of a "
            f"majority-class accuracy of the split (the most frequent test class / the train majority class scored on "
            f"test, where they differ: {maj}).")


def _paired_delta(runs: list[Run], ds: str, row: str, metric: str) -> Cell:
    """Per-seed (row - full) differences over the seeds both have."""
    by = {}
    for r in runs:
        if r.status == "ok" and _key(r) in ((ds, row), (ds, "full")) and r.get(metric) is not None:
            by.setdefault(_key(r)[1], {})[r.get("seed")] = float(r.get(metric))
    a, b = by.get(row, {}), by.get("full", {})
    return Cell([a[s] - b[s] for s in sorted(set(a) & set(b), key=str)])


def _paper_delta(row: str, ds: str) -> float | None:
    """The paper's own difference of ``row`` from the full model on ``ds`` (Figures 3-4 bar labels), else None."""
    pa = PAPER.get(row, {}).get(ds)
    return None if pa is None or row == "full" else pa[0] - PAPER["full"][ds][0]


def _differences(items: dict, deltas: dict[tuple[str, str], Delta]) -> list[str]:
    """Figures 3-4 as differences from the full model (``deltas``: (dataset, variant) -> that variant's Δ accuracy
    with its 95% paired-bootstrap interval; shown beside the paper's Δ), then one verdict line per dataset over every
    variant of both figures and the redundancy table, and one Bonferroni-corrected line over all judged differences,
    as Table 4 does (stats.verdict_line, stats.family_line)."""
    if not deltas:
        return []
    shown = [ds for ds in DATASETS if any(d == ds for d, _ in deltas)]  # datasets with some difference: verdicts
    cols = [ds for ds in shown if any((ds, k) in deltas for k in FIGURE_VARIANTS)] or shown  # ... a figure's: table
    header = ["Variant"] + [f"{DATASETS[ds]} {m}" for ds in cols for m in ("Δ Acc [95% CI]", "n", "Δ paper")]
    table = []
    for k, name in VARIANT_NAMES.items():
        if k not in FIGURE_VARIANTS:  # the redundancy rows' intervals are in their own table above
            continue
        cells = [name]
        for ds in cols:
            d, pd = deltas.get((ds, k)), _paper_delta(k, ds)
            cells += [d.fmt() if d else MISSING, f"{d.n_a} vs {d.n_b}" if d else MISSING,
                      f"{pd:+.2f}" if pd is not None else MISSING]
        table.append(cells)
    lines = ["## Figures 3-4 as differences from the full model; what is resolved", "",
             "Δ = variant − full Fastformer (test accuracy, points); 95% interval from the paired two-level bootstrap "
             "of fastformer/results/stats.py (test items resampled, the same draw for both rows, and each row's seeds "
             f"resampled); n = seeds of the variant vs the full model. A difference is judged once both rows have >= "
             f"{MIN_SEEDS} seeds; Δ paper = the paper's bar minus its full-model bar. The verdict lines cover these "
             "and the redundancy rows.", "",
             md_table(header, table), ""]
    for ds in shown:
        mine = {k: d for (e, k), d in deltas.items() if e == ds}
        lines.append("- " + verdict_line(DATASETS[ds], {VARIANT_NAMES[k]: d for k, d in mine.items()},
                                         {VARIANT_NAMES[k]: _paper_delta(k, ds) for k in mine}, ref="the full model"))
    judged = [c for c, d in deltas.items() if is_judged(d)]
    label = {(ds, k): f"{VARIANT_NAMES[k]} on {DATASETS[ds]}" for ds, k in judged}
    lines.append(family_line(items, {label[c]: (c, (c[0], "full")) for c in judged},
                             {label[c]: _paper_delta(c[1], c[0]) for c in judged}, "All datasets together"))
    return lines + [""]


def _plot(acc: dict, refs: dict[str, list[float]], out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    # the datasets where some variant ran (the cpu preset ablates IMDB only; its Amazon/MIND panels would hold nothing
    # but the reference bars), all of them when none ran yet
    shown = {ds: n for ds, n in DATASETS.items() if any((ds, k) in acc for k in FIGURE_VARIANTS)} or DATASETS
    fig, axes = plt.subplots(len(FIGURES), len(shown), figsize=(max(4.2 * len(shown), 8.4), 4.0 * len(FIGURES)),
                             squeeze=False)
    for fi, (title, rows) in enumerate(FIGURES.items()):
        for di, (ds, ds_name) in enumerate(shown.items()):
            ax = axes[fi][di]
            xs = range(len(rows))
            ours = [acc.get((ds, k), Cell()) for k, _ in rows]
            bars = ax.bar([x - 0.2 for x in xs], [c.mean if c.values else 0 for c in ours], 0.4,
                          yerr=[c.std if c.values else 0 for c in ours], label="ours", color="tab:blue")
            for bar, c in zip(bars, ours):
                if degenerate(c, refs.get(ds, [])):  # at the majority class: greyed and hatched
                    bar.set_facecolor("0.85")
                    bar.set_edgecolor("tab:blue")
                    bar.set_hatch("///")
            ax.bar([x + 0.2 for x in xs], [PAPER[k][ds][0] for k, _ in rows], 0.4, label="paper", color="tab:gray")
            for m in refs.get(ds, []):
                ax.axhline(m, color="k", ls=":", lw=0.8)
            ax.set_xticks(list(xs), [n for _, n in rows], rotation=20, fontsize=7)
            ax.set_title(f"{ds_name}: {title.split(':')[0]}", fontsize=9)
            ax.set_ylabel("accuracy (%)")
            vals = [c.mean for c in ours if c.values] + [PAPER[k][ds][0] for k, _ in rows] + refs.get(ds, [])
            ax.set_ylim(max(0.0, min(vals) - 5), max(vals) + 3)
            for x, c in zip(xs, ours):
                if not c.values:  # not run: say so instead of drawing a zero-height bar
                    ax.text(x - 0.2, ax.get_ylim()[0], "n/a", ha="center", va="bottom", fontsize=7)
    ns = sorted({acc[(ds, k)].n for rows in FIGURES.values() for k, _ in rows for ds in shown
                 if (ds, k) in acc and acc[(ds, k)].values})  # seeds behind the plotted bars
    seeds = (f"{ns[0]}" if len(ns) == 1 else f"{ns[0]}-{ns[-1]}") if ns else "0"
    handles = [Patch(color="tab:blue", label=f"ours: mean over n={seeds} seed{'s' * (ns != [1])}"
                     + (", error bar = std" if ns and ns[-1] > 1 else " (no error bar at n=1)")),
               Patch(color="tab:gray", label="paper (Wu et al. 2021 v5)"),
               Patch(facecolor="0.85", edgecolor="tab:blue", hatch="///", label=DEGENERATE_LABEL),
               plt.Line2D([], [], color="k", ls=":", lw=0.8, label="majority-class accuracy of the split")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"Ablations: test accuracy, ours (n={seeds} seed{'s' * (ns != [1])} per bar) vs paper", fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 0.96))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)


def build(runs_root: str | Path, out_dir: str | Path, preset: str) -> Path:
    runs = [r for r in load_runs(runs_root, task="classification") if _key(r) and _key(r)[0] in DATASETS]
    acc, mf, params = (group(runs, _key, m) for m in ("test.acc", "test.macro_f1", "params"))
    refs = majority_refs(runs)

    def acc_fmt(ds: str, k: str) -> str:
        a = acc.get((ds, k))
        return (a.fmt() + (f" {MARK}" if degenerate(a, refs.get(ds, [])) else "")) if a else MISSING

    def maj_csv(ds: str, k: str) -> list:
        return [refs[ds][0] if ds in refs else "", int(degenerate(acc.get((ds, k)), refs.get(ds, [])))]
    lines = [f"# Ablations: paper Figures 3-4 and redundancy (preset: {preset})", "",
             "Generated by `scripts/make_tables.py` from the runs' metrics.json. Ours = test metrics at the best "
             "validation epoch, mean ± std over seeds; paper = Wu et al. 2021 v5 Figures 3-4 (bar labels, PAPER.md "
             "§2.6). '—' = not run.", ""]
    if preset != "paper":
        lines += [f"**Preset `{preset}`: subsets and a smaller model; compare rows with each other, not with the "
                  "paper's absolute values.**", ""]
    lines += [provenance(runs), ""]
    csv_rows = []
    for title, rows in FIGURES.items():
        lines += [f"## {title}", ""]
        header = ["Variant"] + [f"{n} {m}" for n in DATASETS.values() for m in ("Acc (ours)", "Acc (paper)",
                                                                              "MF (ours)", "MF (paper)")]
        table = []
        for k, name in rows:
            cells = [name]
            for ds in DATASETS:
                a, m = acc.get((ds, k)), mf.get((ds, k))
                pa, pm = PAPER[k][ds]
                cells += [acc_fmt(ds, k), fmt_num(pa), m.fmt() if m else MISSING, fmt_num(pm)]
                csv_rows.append([title.split(":")[0], ds, k, a.mean if a else "", a.std if a else "", pa,
                                 m.mean if m else "", m.std if m else "", pm, a.n if a else 0,
                                 params[(ds, k)].mean if (ds, k) in params else "", *maj_csv(ds, k)])
            table.append(cells)
        lines += [md_table(header, table), ""]
        if any(MARK in c for row in table for c in row[1:]):
            lines += [_footnote(refs), ""]
    items = items_by_row(runs, _key)
    deltas = {(ds, k): d for ds in DATASETS for k in VARIANT_NAMES  # variant - full model, 95% paired bootstrap
              if (d := row_delta(items, (ds, k), (ds, "full"))) is not None}
    lines += ["## Redundancy ablations (review's \"redundant modules\")", "",
              "Δ = variant − full Fastformer, per seed then averaged (same seeds, same data)" +
              ("; where the runs recorded per-item test correctness, with its 95% interval from the paired two-level "
               "bootstrap of fastformer/results/stats.py (test items and seeds resampled; resolved when it excludes "
               "0)." if items else "."), ""]
    header = ["Variant"] + [f"{n} {m}" for n in DATASETS.values() for m in ("Acc", "Δ Acc", "params")]
    table = []
    for k, name in REDUNDANCY:
        cells = [name]
        for ds in DATASETS:
            a = acc.get((ds, k))
            d = _paired_delta(runs, ds, k, "test.acc") if k != "full" else None
            ci = deltas.get((ds, k))
            cells += [acc_fmt(ds, k), ci.fmt() if ci else
                      (f"{d.mean:+.2f}" if d and d.values else MISSING) if d else "ref",
                      fmt_num(params[(ds, k)].mean, 0) if (ds, k) in params else MISSING]
            if k != "full":  # the full model's row is already in the figure rows
                csv_rows.append(["redundancy", ds, k, a.mean if a else "", a.std if a else "", "",
                                 "", "", "", a.n if a else 0, params[(ds, k)].mean if (ds, k) in params else "",
                                 *maj_csv(ds, k)])
        table.append(cells)
    lines += [md_table(header, table), ""]
    if any(MARK in c for row in table for c in row[1:]):
        lines += [_footnote(refs), ""]
    lines += _differences(items, deltas)
    out = Path(out_dir) / table_stem("ablations", preset)
    lines += [f"![ablations]({out.name}.png)", ""]
    write_outputs(out, "\n".join(lines), ["figure", "dataset", "row", "acc_mean", "acc_std", "acc_paper",
                                          "macro_f1_mean", "macro_f1_std", "macro_f1_paper", "n_seeds", "params",
                                          "majority_acc", "degenerate"],
                  csv_rows)
    _plot(acc, refs, out.with_suffix(".png"))
    return out.with_suffix(".md")

