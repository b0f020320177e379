"""Table 4 (text classification): accuracy and macro-F1, mean ± std over seeds, the paper's values beside."""
from __future__ import annotations

from pathlib import Path

from fastformer.results.common import (
    MISSING,
    Cell,
    Run,
    fmt_delta,
    fmt_num,
    group,
    load_runs,
    md_table,
    provenance,
    table_stem,
    write_outputs,
)
from fastformer.results.rows import (
    NAMES,
    TABLE4_DATASETS as DATASETS,
    TABLE4_PAPER as PAPER,
    TABLE4_ROWS as ROWS,
)
from fastformer.results.stats import MIN_SEEDS, Delta, bonferroni_level, items_by_row, row_delta

REFERENCE = "transformer"  # the row every other row's difference is taken against


def _row_key(r: Run) -> tuple[str, str]:
    return r.get("dataset"), r.get("row")


def _deltas(items: dict, ds: str) -> dict[str, Delta]:
    """Each row's accuracy difference from the reference row on ``ds``, with its 95% interval (rows whose runs and
    the reference's cover the same test items)."""
    deltas = {row: row_delta(items, (ds, row), (ds, REFERENCE)) for row in ROWS if row != REFERENCE}
    return {row: d for row, d in deltas.items() if d is not None}


def _paper_delta(row: str, ds: str) -> float | None:
    """The paper's own difference of ``row`` from the reference row on ``ds`` (Table 4), None where it has none."""
    pa, ref = PAPER.get(row, {}).get(ds, (None,))[0], PAPER.get(REFERENCE, {}).get(ds, (None,))[0]
    return None if pa is None or ref is None or row == REFERENCE else pa - ref


def _verdict(ds_name: str, deltas: dict[str, Delta], ds: str = "") -> str:
    """One line: which rows' differences from the Transformer are resolved (interval excludes 0) and which are not,
    and for the judged rows with a paper difference, whether the paper's difference lies inside our interval."""
    if not deltas:
        return (f"**{ds_name}:** no interval (the rows' runs lack per-item test records, or the Transformer row is "
                "missing).")
    ready = {r: d for r, d in deltas.items() if min(d.n_a, d.n_b) >= MIN_SEEDS}
    res = [f"{NAMES[r]} {d.fmt()}" for r, d in ready.items() if d.resolved]
    unres = [f"{NAMES[r]} {d.fmt()}" for r, d in ready.items() if not d.resolved]
    pending = [f"{NAMES[r]} (n = {d.n_a} vs {d.n_b})" for r, d in deltas.items() if r not in ready]
    paper = {r: _paper_delta(r, ds) for r in ready}
    outside = [f"{NAMES[r]} (paper {p:+.2f})" for r, p in paper.items() if p is not None
               and not ready[r].lo <= p <= ready[r].hi]
    inside = [f"{NAMES[r]} (paper {p:+.2f})" for r, p in paper.items()
              if p is not None and ready[r].lo <= p <= ready[r].hi]
    return (f"**{ds_name}:** resolved (95% interval excludes 0): {'; '.join(res) or 'none'}. "
            f"Not resolved: {'; '.join(unres) or 'none'}."
            + (f" The paper's difference lies outside our interval (not reproduced at this scale): "
               f"{'; '.join(outside)}." if outside else "")
            + (f" The paper's difference lies inside our interval: {'; '.join(inside)}." if inside else "")
            + (f" Not yet judged, fewer than {MIN_SEEDS} seeds in the row or the Transformer's: {'; '.join(pending)}."
               if pending else ""))


def _family_verdict(items: dict) -> str:
    """One line over all datasets together: every judged difference (both rows >= MIN_SEEDS seeds) re-tested with a
    Bonferroni-corrected interval, so that the chance of any false "resolved" in the table stays at 5%."""
    judged = [(ds, row) for ds in DATASETS for row, d in _deltas(items, ds).items() if min(d.n_a, d.n_b) >= MIN_SEEDS]
    if not judged:
        return "- **All datasets together:** no difference judged yet."
    level = bonferroni_level(len(judged))
    adj = {(ds, row): row_delta(items, (ds, row), (ds, REFERENCE), level=level) for ds, row in judged}
    res = [f"{NAMES[row]} on {DATASETS[ds]} {d.fmt()}" for (ds, row), d in adj.items() if d.resolved]
    paper_out = [f"{NAMES[row]} on {DATASETS[ds]} {d.fmt()} (paper {_paper_delta(row, ds):+.2f})"
                 for (ds, row), d in adj.items()
                 if _paper_delta(row, ds) is not None and not d.lo <= _paper_delta(row, ds) <= d.hi]
    return ("- **All datasets together, corrected for multiple comparisons** (Bonferroni over the "
            f"{len(judged)} judged differences: {100 * level:.2f}% intervals, family-wise error 5%): resolved: "
            f"{'; '.join(res) or 'none'}. The paper's difference lies outside the corrected interval: "
            f"{'; '.join(paper_out) or 'none'}. The per-dataset lines above use 95% intervals, one comparison at a "
            "time.")


def build(runs_root: str | Path, out_dir: str | Path, preset: str) -> Path:
    # this table's runs: its datasets and rows (the ablation runs on the same datasets have their own variants)
    runs = [r for r in load_runs(runs_root, task="classification")
            if r.get("dataset") in DATASETS and r.get("row") in ROWS]
    acc = group(runs, _row_key, "test.acc")
    mf = group(runs, _row_key, "test.macro_f1")
    tps = group(runs, _row_key, "train_tokens_per_s")
    params = group(runs, _row_key, "params")
    items = items_by_row(runs, _row_key)
    with_ci = bool(items)  # runs recorded per-item test correctness: Δ vs the Transformer with its interval
    lines = [f"# Table 4: text classification (preset: {preset})", "",
             "Generated by `scripts/make_tables.py` from the runs' metrics.json; never edited by hand. Ours = test "
             "metrics at the best validation epoch, mean ± std over seeds (n = seeds); paper = Wu et al. 2021 "
             "Table 4 (mean of 5 runs); Δ = ours − paper. '—' = not run, 'failed' = the run raised (see its "
             "failed.json).", ""]
    if preset == "cpu":
        lines += ["**Preset `cpu`: the full data we hold, but 256-token texts, a 128-wide model, a 30k vocabulary and "
                  "2 epochs (see configs/preset_task/cpu_classification.yaml for the reasons), so the numbers are not "
                  "comparable with the paper's in absolute terms; compare rows with each other.**", ""]
    elif preset != "paper":
        lines += [f"**Preset `{preset}`: subsets, shorter texts and a smaller model (see "
                  f"configs/preset_task/{preset}_classification.yaml), so the numbers are not comparable with the "
                  "paper's in absolute terms; compare rows with each other.**", ""]
    if with_ci:
        lines += ["Δ vs Transformer = this row's mean test accuracy minus the Transformer row's (points) with its 95% "
                  "interval from a paired two-level bootstrap: test items resampled (the same draw for both rows, "
                  "which are scored on the same items) and each row's seeds resampled, 2,000 replicates "
                  "(fastformer/results/stats.py). A difference is *resolved* when its interval excludes 0; it is "
                  f"judged only once both rows have >= {MIN_SEEDS} seeds (with fewer the interval cannot see the seed "
                  "spread). The paper's own difference (paper Δ) is given for comparison.", ""]
    lines += [provenance(runs), ""]
    verdicts = []
    csv_rows = []
    for ds, ds_name in DATASETS.items():
        ds_runs = [r for r in runs if _row_key(r)[0] == ds and r.status == "ok"]
        info = ds_runs[0].get("data_info", {}) if ds_runs else {}
        maj = group(ds_runs, lambda r: 0, "test.majority_acc").get(0)
        lines += [f"## {ds_name}", "",
                  f"Data used: {info.get('data_used', MISSING)}; sizes train/val/test: "
                  f"{info.get('sizes', MISSING)}; most frequent test class: "
                  f"{maj.fmt() if maj else MISSING}% of test. The "
                  "reference rows (same split, no neural network) show how much a bag of words recovers.", ""]
        header = ["Model", "Acc (ours)", "Acc (paper)", "Δ Acc", "Macro-F (ours)", "Macro-F (paper)", "Δ Macro-F",
                  "n", "params", "train tok/s"]
        deltas = _deltas(items, ds) if with_ci else {}
        if with_ci:
            header[4:4] = ["Δ vs Transformer [95% CI]", "paper Δ"]
        rows = []
        for row in ROWS:
            k = (ds, row)
            pa, pm = PAPER.get(row, {}).get(ds, (None, None))
            a, m = acc.get(k), mf.get(k)
            line = [NAMES[row], a.fmt() if a else MISSING, fmt_num(pa), fmt_delta(a, pa),
                    m.fmt() if m else MISSING, fmt_num(pm), fmt_delta(m, pm), a.n if a else 0,
                    fmt_num(params[k].mean, 0) if k in params else MISSING,
                    fmt_num(tps[k].mean, 0) if k in tps else MISSING]
            if with_ci:
                ref_paper = PAPER.get(REFERENCE, {}).get(ds, (None,))[0]
                line[4:4] = [deltas[row].fmt() if row in deltas else MISSING,
                             f"{pa - ref_paper:+.2f}" if pa is not None and ref_paper is not None and
                             row != REFERENCE else MISSING]
            rows.append(line)
            d = deltas.get(row)
            csv_rows.append([ds, row, a.mean if a else "", a.std if a else "", pa or "", m.mean if m else "",
                             m.std if m else "", pm or "", a.n if a else 0, len(a.failed) if a else 0,
                             info.get("data_used", ""), d.mean if d else "", d.lo if d else "", d.hi if d else ""])
        for key, name in (("majority", "Majority class of train (reference)"),
                          ("bow_logreg", "TF-IDF logistic regression (reference)")):
            a = group(ds_runs, lambda r: 0, f"baselines.{key}_acc").get(0)
            m = group(ds_runs, lambda r: 0, f"baselines.{key}_macro_f1").get(0)
            if a is None or not a.values:
                continue
            a, m = Cell([a.values[0]]), Cell([m.values[0]])  # same split for every run: one value
            line = [name, a.fmt(), MISSING, MISSING, m.fmt(), MISSING, MISSING, "—", "—", "—"]
            if with_ci:
                line[4:4] = [MISSING, MISSING]
            rows.append(line)
            csv_rows.append([ds, key, a.mean, "", "", m.mean, "", "", 1, 0, info.get("data_used", ""), "", "", ""])
        lines += [md_table(header, rows), ""]
        if with_ci:
            verdicts.append(_verdict(ds_name, deltas, ds))
            lines += [verdicts[-1], ""]
    if verdicts:
        lines += ["## What is resolved", "", *[f"- {v}" for v in verdicts], _family_verdict(items), ""]
    out = Path(out_dir) / table_stem("table4_classification", preset)
    write_outputs(out, "\n".join(lines), ["dataset", "model", "acc_mean", "acc_std", "acc_paper", "macro_f1_mean",
                                          "macro_f1_std", "macro_f1_paper", "n_seeds", "n_failed", "data_used",
                                          "delta_vs_transformer", "delta_lo95", "delta_hi95"],
                  csv_rows)
    return out.with_suffix(".md")
