"""Probes: test accuracy vs sequence length per mixer, per probe -> ``results/probes.{md,csv,png}``.

Reads probe runs by their recorded dataset, variant (the row) and data_info (seq_len, params.n_pairs;
configs/experiment/probe/). For each probe the table lists
every row at every length (mean ± std over seeds), the parameter count, chance level, and a generated summary of which
rows reach ``SOLVED`` accuracy at which lengths -- the text the README's "what the evidence says" is written from.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

from fastformer.results.common import MISSING, Run, fmt_num, group, load_runs, md_table, provenance, write_outputs
from fastformer.results.rows import (
    CAUSAL_ROWS,
    PROBE_DATASETS as PROBES,
    PROBE_ROWS as ROWS,
    ZOOLOGY_ATTENTION,
)
from fastformer.results.stats import seed_interval

SOLVED = 90.0  # accuracy (%) counted as "solves the probe"


# probe datasets keyed by n_pairs as well (their config tags the runs: ``run_tag: _P${data.params.n_pairs}``)
PAIRS_AXIS = {"probe_mqar"}


def _key(r: Run) -> tuple[str, int, str] | None:
    """-> (panel, x, row) from the run's dataset, variant and data_info. Runs of a ``PAIRS_AXIS`` dataset (unless
    ``data_info.pairs_axis`` is false: runs made before the n_pairs tag) form one panel per length with x = n_pairs;
    every other probe has one panel with x = sequence length. Causal probes (``data_info.causal``) have their own
    section (``_causal_section``)."""
    ds, row, info = r.get("dataset"), r.get("row"), r.get("data_info") or {}
    seq_len, n_pairs = info.get("seq_len"), (info.get("params") or {}).get("n_pairs")
    if not ds or not row or seq_len is None or info.get("causal"):
        return None
    if info.get("pairs_axis", ds in PAIRS_AXIS) and n_pairs is not None:
        return f"{ds}@L{seq_len}", int(n_pairs), row
    return ds, int(seq_len), row


def panel_length(panel: str) -> int:
    """The L of a per-length panel (``probe_mqar@L128`` -> 128), 0 for the others: panels sort by L, not as text."""
    return int(panel.split("@L")[1]) if "@L" in panel else 0


def _length_axis_section(acc: dict, panels: list[str], pairs: int = 4) -> list[str]:
    """The MQAR panels read along their second axis (issue #23; configs/sweep/probes_length.yaml): every row's test
    accuracy at ``pairs`` key-value pairs across the lengths run, with the softmax control's verdict per length."""
    mqar = [p for p in panels if p.startswith("probe_mqar@L")]
    lengths = [panel_length(p) for p in mqar if any(k[0] == p and k[1] == pairs for k in acc)]
    if len([L for L in lengths if L in LENGTH_AXIS]) == 0:
        return []
    rows = [row for row in ROWS if any((f"probe_mqar@L{L}", pairs, row) in acc for L in lengths if L in LENGTH_AXIS)]
    table, lines = [], []
    for row in rows:
        cells = [acc.get((f"probe_mqar@L{L}", pairs, row)) for L in lengths]
        ns = [c.n for c in cells if c and c.values]
        table.append([row] + [c.fmt(1) if c and c.values else MISSING for c in cells]
                     + [f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)}-{max(ns)}"])
    for L in lengths:
        ctrl = acc.get((f"probe_mqar@L{L}", pairs, "transformer"))
        done = {row: c for row in rows if (c := acc.get((f"probe_mqar@L{L}", pairs, row))) and c.values}
        at_chance = [row for row, c in done.items() if abs(c.mean - 100 / pairs) <= 2.0]
        solved = [row for row, c in done.items() if c.mean >= SOLVED]
        verdict = ("the control solves it" if ctrl and ctrl.values and ctrl.mean >= 99.0 else
                   "**the control does not reach 99%: this length decides nothing**")
        lines.append(f"- L={L}: {verdict}; solved (>= {SOLVED:.0f}%) by {', '.join(solved) or 'none'}; within 2 "
                     f"points of the in-context chance {100 / pairs:.0f}%: {', '.join(at_chance) or 'none'}.")
    return [f"## MQAR at {pairs} pairs along the sequence length (the second axis)", "",
            f"The per-length panels above read across L at {pairs} key-value pairs, one recipe at every length "
            "(fresh sequences every epoch, the token shift, d_model 64, no FFN, 4 epochs of 24k; L=32 from the "
            "probes_recall stage, L=64-256 from probes_length): test accuracy (%), mean ± std over seeds.", "",
            md_table(["Mixer"] + [f"L={L}" for L in lengths] + ["n"], table), ""] + lines + [""]


def axis_name(panel: str) -> str:
    return "n_pairs" if "@L" in panel else "L"


def chance(info: dict) -> float | None:
    """Accuracy (%) of the best input-blind guess. MQAR: one of the n_pairs values present in the sequence (the
    in-context chance, the plateau a model reaches once it knows the answer is an in-context value)."""
    p, probe = info.get("params", {}), info.get("probe")
    if probe == "mqar":
        return 100.0 / p.get("n_pairs", 8)
    if probe == "dup":
        return 50.0
    if probe == "majority":
        return 100.0 / p.get("n_symbols", 8)
    return None


def vocab_chance(info: dict) -> float | None:
    """MQAR: accuracy (%) of guessing a value id uniformly, without using the context (1 / number of value ids)."""
    p = info.get("params", {})
    if info.get("probe") != "mqar":
        return None
    vocab = p.get("vocab", 256)
    return 100.0 / (vocab - 2 - (vocab - 2) // 2)


FAMILY = {"transformer": "C0", "longformer": "C1", "bigbird": "C2", "linformer": "C3", "linear_transformer": "C4",
          "poolingformer": "C5", "performer": "C6", "pooling_baseline": "C7"}  # every Fastformer row: FASTFORMER_COLOUR
FASTFORMER_COLOUR = "C9"
VARIANT_STYLE = {"fastformer": "-", "fastformer_official": "--", "no_output_transform": ":",
                 "global_key_from_k": "-.", "no_key_branch": (0, (5, 1)),
                 "mean_pooling": (0, (1, 3)), "no_query_residual": (0, (3, 1, 1, 1, 1, 1))}


def _plot(acc: dict, probes: list[str], lengths: dict, chances: dict, out: Path, title: str) -> None:
    """One panel per probe: accuracy vs the difficulty axis, mean line with a min-max band over seeds; one colour per
    mixer family (Fastformer variants share one colour and differ by line style), chance lines dotted."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ncol = min(3, len(probes))
    nrow = -(-len(probes) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.6 * ncol + 2.4, 3.6 * nrow), squeeze=False)
    for ax in axes.flat[len(probes):]:
        ax.axis("off")
    for ax, probe in zip(axes.flat, probes):
        for row in ROWS:
            pts = [(x, acc[(probe, x, row)]) for x in lengths[probe] if (probe, x, row) in acc
                   and acc[(probe, x, row)].values]
            if not pts:
                continue
            colour = FASTFORMER_COLOUR if row in VARIANT_STYLE else FAMILY.get(row, "k")
            xs, mean = [x for x, _ in pts], [c.mean for _, c in pts]
            ax.plot(xs, mean, color=colour, ls=VARIANT_STYLE.get(row, "-"), marker="o", ms=3, lw=1.4,
                    label=f"{row} (n={min(c.n for _, c in pts)})")
            ax.fill_between(xs, [min(c.values) for _, c in pts], [max(c.values) for _, c in pts], color=colour,
                            alpha=0.12, lw=0)
        if axis_name(probe) == "n_pairs":  # MQAR: the in-context chance 1/n_pairs changes along the axis
            xs = lengths[probe]
            ax.plot(xs, [100.0 / x for x in xs], color="k", ls="--", lw=0.8)
            ax.annotate("in-context chance 1/n_pairs", (xs[-1], 100.0 / xs[-1]), ha="right", va="bottom", fontsize=6)
        for value, label in chances.get(probe, []):
            ax.axhline(value, color="k", ls=":", lw=0.8)
            ax.annotate(label, (1.0, value), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=6)
        ax.set_xscale("log", base=2)
        ax.set_xticks(lengths[probe], [str(x) for x in lengths[probe]])
        ax.set_xlabel("key-value pairs" if axis_name(probe) == "n_pairs" else "sequence length")
        ax.set_ylabel("test accuracy (%)")
        ax.set_ylim(0, 102)
        ax.set_title(_title(probe), fontsize=9)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=6.5, loc="center right", frameon=False)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / (4.6 * ncol + 2.4), 0.95))
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def _title(panel: str) -> str:
    base, _, length = panel.partition("@")
    return PROBES.get(base, base) + (f", {length.replace('L', 'L=')}" if length else "")


def build(runs_root: str | Path, out_dir: str | Path, preset: str) -> Path:
    runs = [r for r in load_runs(runs_root, task="probe") if _key(r)]
    acc, params = group(runs, _key, "test.acc"), group(runs, _key, "params")
    order = list(PROBES)
    probes = sorted({_key(r)[0] for r in runs}, key=lambda p: (
        order.index(p.split("@")[0]) if p.split("@")[0] in order else len(order), panel_length(p), p))
    lengths = {p: sorted({_key(r)[1] for r in runs if _key(r)[0] == p}) for p in probes}
    seeds = sorted({int(r.get("seed")) for r in runs if r.get("seed") is not None})
    chances: dict[str, list] = {}
    lines = [f"# Probes: accuracy vs difficulty (preset: {preset})", "",
             "Generated by `scripts/make_tables.py` from the runs' metrics.json. Test accuracy (%) at the best "
             "validation epoch, mean ± std over seeds (n = seeds per cell, in the `n` column as min-max over the "
             f"row); '—' = not run. \"Solved\" = mean at least {SOLVED:.0f}%. Every row has the same embedding, "
             "positions, width, depth, FFN and head (configs/experiment/probe/base.yaml, plus the sweep's overrides); "
             "params differ only by the mixer's own weights. Rows after `fastformer_official` are the pooling baseline "
             "(no token-token interaction at all) and the Fastformer redundancy variants (configs/ablation/, run as "
             "`experiment=probe/fastformer ablation=<name>`).", ""]
    if not probes:
        lines += ["No probe runs found: run `python scripts/train.py -m +sweep=probes_recall preset=quick "
                  "seed=1,2,3`.", ""]
    lines += [provenance(runs) + f"; seeds {','.join(map(str, seeds)) or '—'}", ""]
    csv_rows = []
    for probe in probes:
        ok = [r for r in runs if _key(r)[0] == probe and r.status == "ok"]
        info = ok[0].get("data_info", {}) if ok else {}
        ax = axis_name(probe)
        params_shown = {k: v for k, v in info.get("params", {}).items() if not (ax == "n_pairs" and k == "n_pairs")}
        lines += [f"## {_title(probe)} (`data={probe.split('@')[0]}`)", ""]
        recipe = (f"Generator params: {params_shown or MISSING}; "
                  f"{'fresh sequences every epoch, ' if info.get('fresh_per_epoch') else ''}"
                  f"{info.get('n_train', '?')} training sequences per epoch.")
        lines.append(recipe)
        walls = [float(r.get("wall_s")) for r in ok if r.get("wall_s") is not None]
        if walls:  # what the panel costs: the budget of its sweep stage (runs share the machine one at a time)
            devices = sorted({str(r.get("device")) for r in ok if r.get("device")})
            lines.append(f"Compute: {len(walls)} finished runs, {sum(walls) / 3600:.2f} h of wall time in total "
                         f"(median {sorted(walls)[len(walls) // 2]:.0f} s per run; {'; '.join(devices) or '?'}).")
        if info.get("probe") == "mqar":
            vc = vocab_chance(info)
            pairs = lengths[probe] if ax == "n_pairs" else [info.get("params", {}).get("n_pairs", 8)]
            lines.append(f"Chance: in-context 1/n_pairs ({', '.join(f'{x}: {100 / x:.1f}%' for x in pairs)}) "
                         f"-- the plateau of a model that knows the answer is one of the values present; vocabulary "
                         f"{vc:.1f}% (a value id guessed blindly).")
            chances[probe] = [(vc, "vocabulary chance")]
            if len(pairs) == 1:
                chances[probe].append((100 / pairs[0], "in-context chance"))
        else:
            c = chance(info)
            lines.append(f"Chance: {fmt_num(c, 1)}%.")
            chances[probe] = [(c, "chance")] if c is not None else []
        lines.append("")
        header = ["Mixer"] + [f"{'P' if ax == 'n_pairs' else 'L'}={x}" for x in lengths[probe]] + ["n", "params"]
        table, solved, unsolved = [], {}, {}
        for row in ROWS:
            cells = [acc.get((probe, x, row)) for x in lengths[probe]]
            if not any(cells):
                continue
            ps = [params[(probe, x, row)].mean for x in lengths[probe] if (probe, x, row) in params]
            ns = [c.n for c in cells if c]
            table.append([row] + [c.fmt(1) if c else MISSING for c in cells]
                         + [f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)}-{max(ns)}"]
                         + [fmt_num(max(ps), 0) if ps else MISSING])
            for x, c in zip(lengths[probe], cells):
                if c and c.values:
                    (solved if c.mean >= SOLVED else unsolved).setdefault(x, []).append(row)
                    ch = 100 / x if ax == "n_pairs" else chance(info)  # MQAR: the in-context chance
                    csv_rows.append([probe, ax, x, row, c.mean, c.std, c.n, params[(probe, x, row)].mean,
                                     ch if ch is not None else ""])
        lines += [md_table(header, table), ""]
        for x in lengths[probe]:
            lines.append(f"- {'P' if ax == 'n_pairs' else 'L'}={x}: solved by "
                         f"{', '.join(solved.get(x, [])) or 'none'}; not solved by "
                         f"{', '.join(unsolved.get(x, [])) or 'none'}.")
        control_fails = [x for x in lengths[probe] if "transformer" in unsolved.get(x, [])]
        if control_fails:  # a probe the softmax control does not solve separates nothing
            lines.append(f"- **The control fails** at {', '.join(f'{ax}={x}' for x in control_fails)}: softmax "
                         f"attention does not solve it at this preset, so these cells decide nothing about the other "
                         f"mixers (a harder recipe -- more data, more steps -- is needed before they can).")
        lines.append("")
    lines += ["![probes](probes.png)", ""]
    lines += _length_axis_section(acc, probes)
    causal_lines, causal_csv = _causal_section(load_runs(runs_root, task="probe"))
    lines += causal_lines
    write_outputs(Path(out_dir) / "probes_causal", "\n".join(["# Causal MQAR (Zoology settings)", ""]
                                                             + causal_lines[2:]),
                  ["L", "n_pairs", "mixer", "best_lr", "acc_mean", "acc_std", "n_seeds", "val_acc_mean",
                   "reached_99", "epochs_mean", "params", "lrs_run", "best_epoch_mean"], causal_csv)
    lines += _interaction_section(runs, Path(out_dir))
    lines += _imdb_interaction_section(runs_root, Path(out_dir))
    lines += _budget_section(load_runs(runs_root, task="probe"), preset)
    out = Path(out_dir) / "probes"
    write_outputs(out, "\n".join(lines), ["panel", "axis", "x", "mixer", "acc_mean", "acc_std", "n_seeds", "params",
                                          "chance"], csv_rows)
    if probes:
        title = f"Probes, preset {preset}, seeds {','.join(map(str, seeds))}: mean over seeds, band = min-max"
        _plot(acc, probes, lengths, chances, out.with_suffix(".png"), title)
    return out.with_suffix(".md")


ZOOLOGY_POINTS = [(64, 4), (128, 8), (256, 16)]  # Zoology's (sequence length, pairs) of its MQAR figure
CAUSAL_TARGET = 99.0  # Zoology's stop criterion and the control's bar
LENGTH_AXIS = (64, 128, 256)  # configs/sweep/probes_length.yaml: data.seq_len

# which finished runs belong to each budgeted stage (configs/reproduce/reproduce.yaml ``stage_budget``)
STAGE_RUNS = {
    "probes_causal": lambda r: bool((r.get("data_info") or {}).get("causal")),
    "probes_length": lambda r: (r.get("dataset") == "probe_mqar" and not (r.get("data_info") or {}).get("causal")
                                and (r.get("data_info") or {}).get("seq_len") in LENGTH_AXIS),
}


def _budget_section(runs: list[Run], preset: str) -> list[str]:
    """'Stages under way': each budgeted stage of this preset (configs/reproduce/reproduce.yaml ``stage_budget``, the
    measured cost on this project's 2-core machine) with how many of its runs have finished."""
    from omegaconf import OmegaConf

    from fastformer.utils import PROJECT_ROOT

    budget = OmegaConf.load(PROJECT_ROOT / "configs" / "reproduce" / "reproduce.yaml").get("stage_budget") or {}
    stages = budget.get(preset) or {}
    if not stages:
        return []
    rows = []
    for stage, b in stages.items():
        done = sum(1 for r in runs if r.status == "ok" and STAGE_RUNS[stage](r))
        rows.append([f"`{stage}`", f"{done} of {b.runs}", fmt_num(float(b.hours), 1), str(b.how)])
    return ["## Stages under way: budget and progress", "",
            "Measured cost on this project's 2-core CPU machine (configs/reproduce/reproduce.yaml `stage_budget`) and "
            "how many of each stage's runs have finished. `python scripts/reproduce.py preset=" + preset + " "
            "stages=[<stage>]` runs or resumes one (finished runs are skipped).", "",
            md_table(["stage", "runs finished", "hours (all runs)", "how measured"], rows), ""]


def causal_point(r: Run) -> tuple[int, int]:
    """(L, pairs) of a causal MQAR run."""
    info = r.get("data_info") or {}
    return int(info.get("seq_len")), int((info.get("params") or {}).get("n_pairs"))


def causal_lr(r: Run) -> float:
    return float((r.get("data_info") or {}).get("lr"))


def best_causal_lr(runs: list[Run], row: str, point: tuple[int, int] | None = None) -> float | None:
    """Zoology's rule: the learning rate whose finished causal MQAR runs of ``row`` (at ``point``, or at the only point
    run) have the highest mean validation accuracy over the seeds that every lr run has (seed 1 in the stage's
    waves; all seeds where the lrs share none); ties go to the smaller lr. None if none finished. Comparing on the
    shared seeds keeps the choice fixed once seeds 2-3 run at the chosen lr: their results do not move it to an lr
    with fewer seeds. The table and scripts/reproduce.py's ``lr: best`` waves (seeds 2-3 at the lr seed 1 chose) both
    use it, so a resumed stage runs the seeds it ran before."""
    done = [r for r in runs if r.status == "ok" and (r.get("data_info") or {}).get("causal") and r.get("row") == row
            and r.get("val.acc") is not None]
    points = {causal_point(r) for r in done}
    if point is None and len(points) > 1:
        raise ValueError(f"causal MQAR runs of {row!r} exist at several points {sorted(points)}: name the point")
    done = [r for r in done if point is None or causal_point(r) == point]
    if not done:
        return None
    seeds = [{r.get("seed") for r in done if causal_lr(r) == lr} for lr in {causal_lr(r) for r in done}]
    shared = set.intersection(*seeds)
    val = group([r for r in done if not shared or r.get("seed") in shared], causal_lr, "val.acc")
    return max(val, key=lambda lr: (val[lr].mean, -lr))


def _recorded(runs: list[Run], key: str, default: int) -> str:
    """The value(s) of a run setting the runs recorded in metrics.json (e.g. ``max_epochs``), joined when they differ;
    ``default`` (the sweep file's value) for runs written before the setting was recorded."""
    vals = sorted({int(v) for r in runs if (v := r.get(key)) is not None}) or [default]
    return "/".join(str(v) for v in vals)


def _causal_cells(runs: list[Run]) -> list[tuple[tuple[int, int], str]]:
    """The (point, row) cells of the causal table, in table order: points ascending, the fixed rows first."""
    rows = CAUSAL_ROWS + sorted({r.get("row") for r in runs} - set(CAUSAL_ROWS))
    return [(pt, row) for pt in sorted({causal_point(r) for r in runs}) for row in rows]


def _causal_section(runs: list[Run]) -> tuple[list[str], list[list]]:
    """Causal MQAR (``data_info.causal``; configs/sweep/probes_causal.yaml): per (L, pairs) point and row, the best of
    the learning rates run (highest mean validation accuracy over the seeds all lrs ran, as Zoology picks the best
    lr: ``best_causal_lr``), its test accuracy mean ± std over seeds, how many of its runs reached 99% validation
    accuracy, the epochs they ran and their best validation epoch (the last one run: still improving when the budget
    ended)."""
    runs = [r for r in runs if (r.get("data_info") or {}).get("causal")]
    lines = ["## Causal MQAR on Zoology's settings (`+sweep=probes_causal`)", ""]
    if not runs:
        return lines + ["Not run yet: `python scripts/reproduce.py preset=quick stages=[probes_causal]` "
                        "(configs/sweep/probes_causal.yaml; budget in configs/reproduce/reproduce.yaml).", ""], []

    point = causal_point

    def k(r: Run) -> tuple:
        return (*point(r), r.get("row"), causal_lr(r))

    test, val = group(runs, k, "test.acc"), group(runs, k, "val.acc")
    epochs, params = group(runs, k, "epochs_run"), group(runs, k, "params")
    best_ep = group(runs, k, "best_epoch")
    info = (runs[0].get("data_info") or {})
    lines += [f"A causal language model (every mixer `causal=True`: position i sees j <= i) on Zoology's MQAR "
              f"distribution (fastformer/data/probes.py `mqar_zoology`): vocabulary {info.get('vocab_size')}, "
              f"power-law query distances (a = {(info.get('params') or {}).get('power_a')}), "
              f"{info.get('n_train')} training sequences, 2 layers, d_model {info.get('d_model')}, learned positions, "
              f"no MLP, AdamW (weight decay {info.get('weight_decay')}), up to {_recorded(runs, 'max_epochs', 64)} "
              f"epochs (Zoology: 64), stopping at "
              f"{CAUSAL_TARGET:.0f}% validation accuracy. Per row and point the best learning rate of those run "
              "(highest mean validation accuracy over the seeds every lr ran, i.e. seed 1, Zoology's rule); test "
              "accuracy (%) of all its runs at that lr, mean ± "
              "std over seeds. `reached` = runs that hit the stop criterion; `best epoch` = the epoch of the best "
              "validation accuracy (mean over seeds; equal to `epochs`: still improving when the runs stopped); "
              "chance = 1/pairs among the in-context values. Deviations from Zoology: constant lr, head dim 16, batch "
              f"{_recorded(runs, 'batch_size', 64)} (Zoology: 512 at L 64-128, 256 at L 256; per sequence the cost on "
              "this CPU is the same, and more, smaller steps suit the shorter epoch budget), no dropout (Zoology's "
              "attention: 0.1), the output head only at query positions (same loss), filler never id 0 (our "
              "padding).",
              f"Zoology's published attention: {ZOOLOGY_ATTENTION}.", ""]
    ran = sorted({point(r) for r in runs})
    not_run = [pt for pt in ZOOLOGY_POINTS if pt not in ran]
    if not_run:
        lines += [f"Points run: {', '.join(map(str, ran))}; not run: {', '.join(map(str, not_run))}. Every point is "
                  "in configs/sweep/probes_causal.yaml (5 rows x 4 lrs x 3 seeds, up to 64 epochs: ~1,200 h upper "
                  "bound on 2 CPU cores, a GPU job); a 2-core CPU reaches (64, 4) only, at 16 epochs: per epoch "
                  "(128, 8) costs 2-5x and (256, 16) 4-10x as much, and the rows that cannot recall never stop "
                  "early (scripts/bench_probe_causal.py, measured in the sweep file).", ""]
    header = ["(L, pairs)", "Mixer", "test acc", "best lr", "val acc", "reached", "epochs", "best epoch", "lrs run",
              "params"]
    table, csv_rows, notes, chosen = [], [], [], {}
    for pt, row in _causal_cells(runs):
        lrs = sorted(lr for (L, P, v, lr) in test if (L, P) == pt and v == row)
        done = [lr for lr in lrs if val.get((*pt, row, lr)) and val[(*pt, row, lr)].values]
        if not lrs:
            continue
        if not done:
            table.append([f"({pt[0]}, {pt[1]})", row, "failed", MISSING, MISSING, MISSING, MISSING, MISSING,
                          str(len(lrs)), MISSING])
            continue
        best = best_causal_lr(runs, row, pt)
        kb = (*pt, row, best)
        chosen.setdefault(pt, {})[row] = (test[kb], val[kb])
        reached = sum(v >= CAUSAL_TARGET for v in val[kb].values)
        ep, be = epochs.get(kb), best_ep.get(kb)
        table.append([f"({pt[0]}, {pt[1]})", row, test[kb].fmt(1), f"{best:g}", fmt_num(val[kb].mean, 1),
                      f"{reached}/{val[kb].n}", fmt_num(ep.mean, 1) if ep and ep.values else MISSING,
                      fmt_num(be.mean, 1) if be and be.values else MISSING,
                      str(len(lrs)), fmt_num(params[kb].mean, 0) if kb in params else MISSING])
        csv_rows.append([pt[0], pt[1], row, best, test[kb].mean, test[kb].std, test[kb].n, val[kb].mean, reached,
                         ep.mean if ep and ep.values else "", params[kb].mean if kb in params else "", len(lrs),
                         be.mean if be and be.values else ""])
        if row == "transformer" and val[kb].mean < CAUSAL_TARGET:
            notes.append(f"- **The control fails at (L, pairs) = {pt}**: softmax attention's best lr reaches "
                         f"{val[kb].mean:.1f}% < {CAUSAL_TARGET:.0f}% validation accuracy, so this point decides "
                         "nothing about the other rows yet.")
    lines += [md_table(header, table), ""] + notes + ([""] if notes else [])
    lines += _causal_verdicts(chosen)
    lines += _causal_lr_table(runs, val)
    lines += _causal_pair_table(runs)
    return lines, csv_rows


def _causal_verdicts(chosen: dict[tuple[int, int], dict]) -> list[str]:
    """Per (L, pairs) point (``chosen``: point -> row -> (test, validation) cells at the row's chosen lr), each row's
    test accuracy against the in-context chance 1/pairs: the 95% t interval of its mean over seeds (the seed spread;
    a test set of 3,000 sequences x pairs queries adds ~0.4 points of item noise per run, already inside it), sorted
    into solved, above, at and below chance. Only where the control solves the point, by the table's criterion: its
    validation accuracy reaches the target."""
    lines = []
    for (L, P), cells in sorted(chosen.items()):
        chance, (_, ctrl) = 100 / P, cells.get("transformer", (None, None))
        if not ctrl or not ctrl.values or ctrl.mean < CAUSAL_TARGET:
            continue  # the control's note above says this point decides nothing
        groups: dict[str, list[str]] = {"solved": [], "above": [], "at": [], "below": [], "one seed": []}
        for row, (c, _) in cells.items():
            ci = seed_interval(c.values)
            if c.mean >= CAUSAL_TARGET:
                groups["solved"].append(row)
            elif ci is None:
                groups["one seed"].append(f"{row} {c.mean:.1f}")
            else:
                g = "above" if ci[0] > chance else "below" if ci[1] < chance else "at"
                groups[g].append(f"{row} {c.mean:.1f} [{ci[0]:.1f}, {ci[1]:.1f}] (n={c.n})")
        parts = [f"solved (>= {CAUSAL_TARGET:.0f}%): {', '.join(groups['solved']) or 'none'}",
                 f"above chance: {', '.join(groups['above']) or 'none'}",
                 f"not distinguishable from chance: {', '.join(groups['at']) or 'none'}",
                 f"below chance: {', '.join(groups['below']) or 'none'}"]
        if groups["one seed"]:
            parts.append(f"one seed, not judged: {', '.join(groups['one seed'])}")
        lines.append(f"- ({L}, {P}): the control solves it ({sum(v >= CAUSAL_TARGET for v in ctrl.values)}/{ctrl.n} "
                     f"runs); against the chance {chance:.0f}% (test accuracy, 95% t interval over seeds): "
                     + "; ".join(parts) + ".")
    return lines + [""] if lines else []


def _measurable(r: Run, cache: str) -> bool:
    """Whether an analysis of trained run ``r`` can be shown: its cached result file ``cache`` is in the run dir, or
    its checkpoints/best.pt to measure it from."""
    return (r.path / cache).exists() or (r.path / "checkpoints" / "best.pt").exists()


def _causal_pair_table(runs: list[Run]) -> list[str]:
    """Test accuracy by the queried pair's place in the context (fastformer/analysis/recall.py), one line per run at
    its row's chosen lr that kept a checkpoint or a cached recall_by_pair.json (per run, not averaged: seeds of one row
    can learn different solutions). Content-based recall answers every pair alike; reading a fixed position answers
    one pair and guesses the rest."""
    from fastformer.analysis.recall import CACHE, run_recall_by_pair

    table, unmeasured, n_pairs = [], [], 0
    for pt, row in _causal_cells(runs):
        best = best_causal_lr(runs, row, pt)
        at_best = sorted((r for r in runs if (*causal_point(r), r.get("row")) == (*pt, row) and r.status == "ok"
                          and causal_lr(r) == best), key=lambda r: int(r.get("seed") or 0))
        for r in at_best:
            if not _measurable(r, CACHE):
                unmeasured.append(f"{row} seed {r.get('seed')}")
                continue
            res = run_recall_by_pair(r.path)
            n_pairs = max(n_pairs, res["n_pairs"])
            table.append([f"({pt[0]}, {pt[1]})", row, str(r.get("seed")), fmt_num(res["acc"], 1),
                          *(fmt_num(a, 1) for a in res["acc_by_pair"])])
    if not table:
        return []
    header = ["(L, pairs)", "Mixer", "seed", "test acc", *(f"pair {p + 1}" for p in range(n_pairs))]
    table = [t + [MISSING] * (len(header) - len(t)) for t in table]  # rows of a point with fewer pairs
    lines = ["Test accuracy (%) by the queried pair, per run at its row's chosen lr (fastformer/analysis/recall.py): "
             "Zoology puts the pairs first at fixed positions (pair p: key at 2p - 2, value at 2p - 1), then queries "
             "each key once. Recall by content answers every pair alike; a model that has learned to read a fixed "
             "position answers one pair and is at or below chance on the rest. Per run, not averaged: seeds of one "
             "row can learn different solutions.", "", md_table(header, table), ""]
    if unmeasured:
        lines += [f"Not measured (the run kept neither checkpoints/best.pt nor {CACHE}): {', '.join(unmeasured)}.",
                  ""]
    return lines


def _causal_lr_table(runs: list[Run], val: dict) -> list[str]:
    """Every learning rate run, per point and row: validation accuracy (%) mean over its seeds (n) -- whether a row
    that fails does so at every lr of Zoology's grid, or only at the ones tried so far."""
    lrs = sorted({causal_lr(r) for r in runs})
    rows = []
    for pt, row in _causal_cells(runs):
        cells = [val.get((*pt, row, lr)) for lr in lrs]
        if any(c is not None for c in cells):
            rows.append([f"({pt[0]}, {pt[1]})", row] + [f"{c.mean:.1f} (n={c.n})" if c is not None and c.values
                                                        else MISSING for c in cells])
    return ["Validation accuracy (%) at every learning rate run (mean over seeds, n = seeds; '—' = not run yet):",
            "", md_table(["(L, pairs)", "Mixer"] + [f"lr {lr:g}" for lr in lrs], rows), ""]


def _interaction_section(runs: list[Run], out_dir: Path) -> list[str]:
    """'Token interaction' section: effective rank of the first mixer's token-to-token Jacobian norms
    (fastformer/analysis/interaction.py) for one trained MQAR model per row (the length with the most rows, its middle
    n_pairs, lowest seed), from its cached interaction.json (committed with the run outcomes) or, without one,
    measured from its checkpoint."""
    mq = [r for r in runs if r.status == "ok" and "@L" in _key(r)[0]
          and _measurable(r, "interaction.json")]
    if not mq:
        return []
    from fastformer.analysis.interaction import run_interaction

    # one panel for every row: the MQAR length with the most rows (the probes_recall stage's L=32 holds all of them;
    # the length axis runs only the decisive rows), the shortest such length on a tie
    panel = max({_key(r)[0] for r in mq}, key=lambda p: (len({_key(r)[2] for r in mq if _key(r)[0] == p}),
                                                           -panel_length(p)))
    mq = [r for r in mq if _key(r)[0] == panel]
    xs = sorted({_key(r)[1] for r in mq})
    x = xs[len(xs) // 2]
    pick: dict[str, Run] = {}
    for r in sorted(mq, key=lambda r: int(r.get("seed", 0))):
        if _key(r)[1] == x:
            pick.setdefault(_key(r)[2], r)
    res = {row: run_interaction(r.path) for row, r in pick.items()}
    accs = {row: r.get("test.acc") for row, r in pick.items()}
    rows = [[row, fmt_num(accs[row], 1), res[row]["n_tokens"], fmt_num(res[row]["rank90"], 1),
             fmt_num(res[row]["rank99"], 1), fmt_num(res[row]["offdiag_rank90"], 1),
             fmt_num(res[row]["offdiag_rank99"], 1), fmt_num(100 * res[row]["offdiag_share"], 1)]
            for row in ROWS if row in res]
    seed = int(next(iter(pick.values())).get("seed"))
    lines = ["## Token interaction: effective rank of the first mixer layer", "",
             f"For each trained MQAR model (L={panel_length(panel)}, P={x} pairs, seed {seed}) and "
             f"{next(iter(res.values()))['n_seqs']} test "
             "sequences: J[i, j] = ||d y_i / d h_j||_F, the sensitivity of the first mixer's output at token i to its "
             "input at token j (autograd Jacobian, exact), and the number of singular values of J holding 90% / 99% of "
             "its energy, for J and for its off-diagonal part (how token i depends on the other tokens), averaged over "
             "the sequences. The review predicts 'diagonal + rank 1' for Fastformer's token mixing. One seed: read the "
             "ranks as a measurement of these models, not a spread.", "",
             md_table(["Mixer", "test acc", "tokens", "rank 90%", "rank 99%", "off-diag rank 90%",
                       "off-diag rank 99%", "off-diag energy %"], rows), "",
             "![token interaction](probes_interaction.png)", ""]
    _plot_interaction(res, out_dir / "probes_interaction.png",
                      f"first-layer |dy_i/dh_j|, MQAR L={panel_length(panel)} P={x}, seed {seed}")
    return lines


IMDB_MAX_TOKENS = 128  # real-text inputs of the IMDB interaction section: the first 128 tokens of each test review
IMDB_N_SEQS = 8
IMDB_COMMAND = ("DATA_ROOT=../shared/data python scripts/train.py -m experiment=imdb/fastformer,"
                "imdb/fastformer_official,imdb/transformer,imdb/linear_transformer,imdb/pooling_baseline "
                "preset=quick seed=1 skip_finished=true logger=none")


def _imdb_interaction_section(runs_root: str | Path, out_dir: Path) -> list[str]:
    """'Token interaction on real inputs' section: the measurement of :func:`_interaction_section` on one trained
    quick-preset IMDB classifier per row (task classification, dataset imdb, variant a mixer row of :data:`ROWS`:
    the Table 4 runs ``imdb/<mixer>`` and the pooling baseline; lowest seed), over the first test reviews cut to
    :data:`IMDB_MAX_TOKENS` tokens. Without such runs it names the command that makes them."""
    title = "## Token interaction on real inputs (IMDB classifier, quick preset)"
    runs = [r for r in load_runs(runs_root, task="classification")
            if r.status == "ok" and r.get("dataset") == "imdb" and r.get("row") in ROWS]
    pick: dict[str, Run] = {}
    for r in sorted(runs, key=lambda r: int(r.get("seed") or 0)):
        if _measurable(r, "interaction.json"):
            pick.setdefault(r.get("row"), r)
    if not pick:
        found = f" ({len(runs)} found, none with checkpoints/best.pt or interaction.json)" if runs else ""
        return [title, "", f"No trained IMDB classifier runs{found}: train one per mixer with `{IMDB_COMMAND}`, then "
                f"`python scripts/make_tables.py --tables probes` measures them (DATA_ROOT set).", ""]
    from fastformer.analysis.interaction import run_interaction

    res, errors = {}, {}
    for row, r in pick.items():
        try:
            res[row] = run_interaction(r.path, n_seqs=IMDB_N_SEQS, max_tokens=IMDB_MAX_TOKENS)
        except Exception as e:  # e.g. the data root is not reachable here: say so in the row, keep the table
            errors[row] = f"{type(e).__name__}: {str(e).splitlines()[0][:160]}" if str(e) else type(e).__name__
    rows = []
    for row in ROWS:
        if row not in pick:
            continue
        r = pick[row]
        acc, maj = r.get("test.acc"), r.get("test.majority_acc")
        if row in errors:
            rows.append([row, fmt_num(acc, 1), f"not measured: {errors[row]}"] + [MISSING] * 5)
            continue
        x = res[row]
        rows.append([row, fmt_num(acc, 1) + (" (majority)" if acc is not None and maj is not None
                                              and abs(acc - maj) <= 0.5 else ""),
                     fmt_num(x["n_tokens"], 1), fmt_num(x["rank90"], 1), fmt_num(x["rank99"], 1),
                     fmt_num(x["offdiag_rank90"], 1), fmt_num(x["offdiag_rank99"], 1),
                     fmt_num(100 * x["offdiag_share"], 1)])
    setting = {row: (x.get("n_seqs"), x.get("max_tokens")) for row, x in res.items()}
    counts = Counter(setting.values())  # the settings most rows were measured with (ties: this section's own)
    n_seqs, max_tokens = max(counts, key=lambda k: (counts[k], k == (IMDB_N_SEQS, IMDB_MAX_TOKENS)),
                             default=(IMDB_N_SEQS, IMDB_MAX_TOKENS))
    any_res = next((res[row] for row in ROWS if setting.get(row) == (n_seqs, max_tokens)), {})
    other = [f"{row} ({setting[row][0]} reviews, {setting[row][1]} tokens)" for row in ROWS
             if row in setting and setting[row] != (n_seqs, max_tokens)]
    seeds = sorted({int(r.get("seed") or 0) for r in pick.values()})
    cap = next((r.get("data_info.max_len") for r in pick.values() if r.get("data_info.max_len")), None)
    maj = next((r.get("test.majority_acc") for r in pick.values() if r.get("test.majority_acc") is not None), None)
    lines = [title, "",
             f"The same measurement on one trained quick-preset IMDB classifier per mixer (runs `imdb/<mixer>` of "
             f"Table 4, `imdb/pooling_baseline` among them; seed {','.join(map(str, seeds))}): J over the first "
             f"{n_seqs} test reviews, each cut to its first {max_tokens} tokens to keep the Jacobian cheap"
             + (f" ({any_res['n_truncated']} of them longer than that as the classifier read them"
                + (f", capped at data.max_len = {cap} tokens" if cap else "")
                + f"; {any_res['mean_full_tokens']:.1f} tokens on average)" if "n_truncated" in any_res else "")
             + f". 'tokens' = mean measured length; test acc = the run's Table 4 accuracy (most frequent test class: "
             f"{fmt_num(maj, 1)}%). One seed: a measurement of these models, not a spread.", "",
             md_table(["Mixer", "test acc", "tokens", "rank 90%", "rank 99%", "off-diag rank 90%",
                       "off-diag rank 99%", "off-diag energy %"], rows), ""]
    unmeasured = [row for row in ROWS if row in {r.get("row") for r in runs} and row not in pick]
    if other:
        lines += [f"Measured with other settings (a cached interaction.json): {', '.join(other)}.", ""]
    if unmeasured:
        lines += [f"Not measured (run without checkpoints/best.pt or interaction.json): {', '.join(unmeasured)}.", ""]
    if res:
        lines += ["![token interaction, IMDB](probes_interaction_imdb.png)", ""]
        _plot_interaction(res, out_dir / "probes_interaction_imdb.png",
                          f"first-layer |dy_i/dh_j|, IMDB classifiers (quick preset), first test reviews "
                          f"(<= {max_tokens} tokens)")
    return lines


def _plot_interaction(res: dict, out: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = [r for r in ROWS if r in res and res[r].get("mean_J") is not None]
    if not rows:
        return
    ncol = min(5, len(rows))
    nrow = -(-len(rows) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.6 * ncol, 2.7 * nrow), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, row in zip(axes.flat, rows):
        j = np.asarray(res[row]["mean_J"])
        ax.imshow(j / max(j.max(), 1e-12), cmap="viridis", vmin=0, vmax=1)
        ax.set_title(f"{row}\noff-diag rank90 {res[row]['offdiag_rank90']:.1f}", fontsize=7)
        ax.axis("on")
        ax.set_xlabel("input token j", fontsize=6)
        ax.set_ylabel("output token i", fontsize=6)
        ax.tick_params(labelsize=5)
    fig.suptitle(title + " (each panel scaled to its max)", fontsize=9)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
