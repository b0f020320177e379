"""Intervals for differences between table rows (and, :func:`seed_interval`, for one row's mean over seeds).

A row's number is a mean over seeds of a test accuracy, so a difference between two rows is uncertain for two reasons:
which seeds were drawn (training noise) and which test items were drawn (a 5,000-item test set gives one accuracy a
standard error of ~0.7 points). Both rows are scored on the *same* test items, so the item part is paired: an item
both rows get right or both get wrong moves neither. :func:`paired_bootstrap_delta` resamples both at once (a
two-level bootstrap): each replicate draws the test items with replacement (the same draw for both rows) and, within
each row, its seeds with replacement, and takes the difference of the rows' mean accuracies. The 2.5 / 97.5
percentiles of the replicates give the 95% interval. With one seed in a row its seed spread is unknown, and the
interval covers the test items only (the table says n). Resampling both levels counts the item-level chance twice
(through the items and through the seeds), so the interval is conservative when seeds differ by little more than that
chance, as the cpu Table 4's runs do: :func:`simulate_coverage` measures it (results/bootstrap_coverage.md).

The per-item correctness comes from metrics.json's ``test_items`` (fastformer/tasks/classification.py), in dataset
order, so the items line up across runs of the same split.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastformer.utils import decode_items

MIN_SEEDS = 3  # a difference is judged (resolved or not) only when both rows have this many seeds: below it the
               # interval cannot see the seed spread (the tables list such rows as "not yet judged")


@dataclass(frozen=True)
class Delta:
    """``a - b`` of two rows' mean accuracies (points), its 95% interval and the replicates' count."""
    mean: float
    lo: float
    hi: float
    n_a: int
    n_b: int
    n_items: int

    @property
    def resolved(self) -> bool:
        """The interval excludes 0: the sign of the difference is settled at 95%."""
        return self.lo > 0 or self.hi < 0

    def fmt(self, digits: int = 2) -> str:
        return f"{self.mean:+.{digits}f} [{self.lo:+.{digits}f}, {self.hi:+.{digits}f}]"


def paired_bootstrap_delta(a: Sequence[np.ndarray], b: Sequence[np.ndarray], *, n_boot: int | None = None,
                           seed: int = 0, level: float = 0.95) -> Delta:
    """``a``, ``b``: one bool vector per seed of the row (True = that run classified the test item correctly), all over
    the same test items. Returns the difference of the rows' mean accuracies in points, with the two-level bootstrap
    interval described in the module docstring. ``n_boot`` (default: enough that each tail holds 50 replicates, at
    least 2,000; 2,000 at 95%) replicates."""
    A, B = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)  # (seeds, items)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1] or A.shape[1] == 0:
        raise ValueError(f"need (seeds, items) arrays over the same items, got {A.shape} and {B.shape}")
    n, sa = A.shape[1], A.shape[0]
    tail = (1 - level) / 2
    n_boot = n_boot or max(2000, math.ceil(50 / tail))
    # Resampling items only moves the rows through each item's correctness pattern across all their seeds, so the
    # items are grouped by pattern (at most 2^(seeds of both rows); 631 for two 5-seed rows of the cpu Table 4's
    # 5,000 IMDB items) and the multinomial draw is over patterns with their frequencies: the same distribution, ~10x
    # faster there (a 99.8% interval: 48 s -> 4.4 s).
    pats, counts = np.unique(np.concatenate([A, B]).T, axis=0, return_counts=True)  # (patterns, seeds), (patterns,)
    Pa, Pb = pats[:, :sa].T, pats[:, sa:].T                                            # (seeds, patterns)
    rng = np.random.default_rng(seed)
    reps = np.empty(n_boot)
    chunk = 2000
    for s in range(0, n_boot, chunk):
        k = min(chunk, n_boot - s)
        w = rng.multinomial(n, counts / n, size=k).T.astype(np.float64)  # (patterns, k): pattern draw counts
        acc_a, acc_b = Pa @ w / n, Pb @ w / n                             # (seeds, k) per-seed accuracies
        ia = rng.integers(0, A.shape[0], size=(A.shape[0], k))
        ib = rng.integers(0, B.shape[0], size=(B.shape[0], k))
        cols = np.arange(k)
        reps[s:s + k] = acc_a[ia, cols].mean(0) - acc_b[ib, cols].mean(0)
    lo, hi = np.quantile(reps, [tail, 1 - tail])
    return Delta(mean=100.0 * float(A.mean() - B.mean()), lo=100.0 * float(lo), hi=100.0 * float(hi),
                 n_a=A.shape[0], n_b=B.shape[0], n_items=n)


def items_by_row(runs: Sequence[Any], key: Callable[[Any], Hashable]) -> dict[Hashable, list[np.ndarray]]:
    """key(run) -> the per-seed test correctness vectors (metrics.json ``test_items``) of the finished runs that
    recorded them (fastformer/results/common.py ``Run`` records)."""
    out: dict[Hashable, list[np.ndarray]] = {}
    for r in runs:
        if r.status == "ok" and r.get("test_items"):
            out.setdefault(key(r), []).append(decode_items(r.get("test_items")))
    return out


def row_delta(items: dict, a: Hashable, b: Hashable, level: float = 0.95) -> Delta | None:
    """Row ``a`` minus row ``b`` (keys of :func:`items_by_row`) with its paired-bootstrap interval at ``level``; None
    unless both rows have runs and all of them cover the same test items."""
    xa, xb = items.get(a), items.get(b)
    if not xa or not xb or len({len(v) for v in xa + xb}) != 1:
        return None
    return paired_bootstrap_delta(xa, xb, level=level)


def seed_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The t interval of a mean over seeds (Student's t, n - 1 degrees of freedom), for a row judged against a fixed
    value (e.g. chance) rather than another row; None below two seeds."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None
    m, sd = float(np.mean(values)), float(np.std(values, ddof=1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return m - half, m + half


def bonferroni_level(m: int, alpha: float = 0.05) -> float:
    """The interval level that keeps the family-wise error of ``m`` comparisons at ``alpha`` (Bonferroni)."""
    return 1.0 - alpha / max(m, 1)


def is_judged(d: Delta) -> bool:
    """Both rows have :data:`MIN_SEEDS` seeds: the difference is judged (resolved or not)."""
    return min(d.n_a, d.n_b) >= MIN_SEEDS


def _paper_vs(deltas: dict[str, Delta], paper: dict[str, float | None], inside: bool) -> list[str]:
    return [f"{name} (paper {paper[name]:+.2f})" for name, d in deltas.items()
            if paper.get(name) is not None and (d.lo <= paper[name] <= d.hi) == inside]


def verdict_line(label: str, deltas: dict[str, Delta], paper: dict[str, float | None], ref: str) -> str:
    """One line for one dataset of a table: ``deltas`` (display name -> that row minus the reference row ``ref``, 95%
    intervals) split into resolved (the interval excludes 0) and not resolved, once judged (:func:`is_judged`); for
    the judged rows, whether ``paper`` (display name -> the paper's own difference) lies inside our interval; the
    rows not yet judged, with their seeds. Table 4 and the ablations table both use it."""
    if not deltas:
        return (f"**{label}:** no interval (the rows' runs lack per-item test records, or {ref} row is missing).")
    ready = {name: d for name, d in deltas.items() if is_judged(d)}
    res = [f"{name} {d.fmt()}" for name, d in ready.items() if d.resolved]
    unres = [f"{name} {d.fmt()}" for name, d in ready.items() if not d.resolved]
    pending = [f"{name} (n = {d.n_a} vs {d.n_b})" for name, d in deltas.items() if name not in ready]
    outside, inside = _paper_vs(ready, paper, inside=False), _paper_vs(ready, paper, inside=True)
    return (f"**{label}:** resolved (95% interval excludes 0): {'; '.join(res) or 'none'}. "
            f"Not resolved: {'; '.join(unres) or 'none'}."
            + (f" The paper's difference lies outside our interval (not reproduced at this scale): "
               f"{'; '.join(outside)}." if outside else "")
            + (f" The paper's difference lies inside our interval: {'; '.join(inside)}." if inside else "")
            + (f" Not yet judged, fewer than {MIN_SEEDS} seeds in the row or {ref}'s: {'; '.join(pending)}."
               if pending else ""))


def family_line(items: dict, pairs: dict[str, tuple[Hashable, Hashable]], paper: dict[str, float | None],
                label: str) -> str:
    """One line over every judged difference of a table (``pairs``: display name -> (row key, reference key) of
    :func:`items_by_row`), each re-tested with a Bonferroni-corrected interval so that the chance of any false
    "resolved" in the table stays at 5%; and the paper's differences (``paper``, by display name) that lie outside
    the corrected interval."""
    if not pairs:
        return f"- **{label}:** no difference judged yet."
    level = bonferroni_level(len(pairs))
    adj = {name: row_delta(items, a, b, level=level) for name, (a, b) in pairs.items()}
    res = [f"{name} {d.fmt()}" for name, d in adj.items() if d.resolved]
    outside = [f"{name} {d.fmt()} (paper {paper[name]:+.2f})" for name, d in adj.items()
               if paper.get(name) is not None and not d.lo <= paper[name] <= d.hi]
    return (f"- **{label}, corrected for multiple comparisons** (Bonferroni over the {len(pairs)} judged differences: "
            f"{100 * level:.2f}% intervals, family-wise error 5%): resolved: {'; '.join(res) or 'none'}. The paper's "
            f"difference lies outside the corrected interval: {'; '.join(outside) or 'none'}. The per-dataset lines "
            "above use 95% intervals, one comparison at a time.")


def simulate_coverage(*, n_items: int, seeds_a: int, seeds_b: int, item_sd: float, mean_logit: float, gap: float,
                      seed_sd: float, n_sims: int, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """How often :func:`paired_bootstrap_delta`'s interval covers the true difference, on simulated tables whose
    truth is known. Model: item i has logit d_i ~ N(``mean_logit``, ``item_sd``) (its difficulty, shared by both
    rows); a trained seed of a row shifts every logit by s ~ N(0, ``seed_sd``) (systematic training noise), row a also
    by ``gap``; each (seed, item) is then right with probability sigmoid(d_i + gap + s), independently (the items a
    retrained model gets right by chance). The truth is the expected accuracy difference over new items and new
    seeds. Returns the truth, the coverage over ``n_sims`` tables, the mean interval width, and two statistics to hold
    against real runs: the mean between-seed std of row a's accuracy (points) and the mean fraction of items on which
    two of its seeds agree."""
    rng = np.random.default_rng(seed)

    def sigmoid(z: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-z))

    d_pop = rng.normal(mean_logit, item_sd, 200_000)[:, None]
    s_pop = rng.normal(0.0, seed_sd, 64)[None, :] if seed_sd > 0 else np.zeros((1, 1))
    truth = 100.0 * float(sigmoid(d_pop + gap + s_pop).mean() - sigmoid(d_pop + s_pop).mean())
    covered, widths, stds, agree = 0, [], [], []
    for _ in range(n_sims):
        d = rng.normal(mean_logit, item_sd, n_items)
        a = [rng.random(n_items) < sigmoid(d + gap + s) for s in rng.normal(0.0, seed_sd, seeds_a)]
        b = [rng.random(n_items) < sigmoid(d + s) for s in rng.normal(0.0, seed_sd, seeds_b)]
        r = paired_bootstrap_delta(a, b, n_boot=n_boot, level=level, seed=int(rng.integers(1 << 31)))
        covered += r.lo <= truth <= r.hi
        widths.append(r.hi - r.lo)
        stds.append(100.0 * float(np.std([x.mean() for x in a], ddof=1)) if seeds_a > 1 else 0.0)
        agree.append(float(np.mean([np.mean(a[i] == a[j]) for i in range(seeds_a) for j in range(i + 1, seeds_a)]))
                     if seeds_a > 1 else 1.0)
    return {"truth": truth, "coverage": covered / n_sims, "width": float(np.mean(widths)),
            "seed_std": float(np.mean(stds)), "agreement": float(np.mean(agree))}
