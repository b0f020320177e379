"""Per-impression ranking metrics of the official MIND evaluation (msnews/MIND ``evaluate.py``), averaged over
impressions.

For one impression with click labels ``y`` (1 = clicked) and scores ``s``:

* AUC = ``sklearn.metrics.roc_auc_score(y, s)`` (ties count 1/2);
* MRR = ``sum_i y_(i) / i / sum(y)`` with ``y_(i)`` the labels sorted by descending score (i = 1-based rank);
* nDCG@k = DCG@k(s) / DCG@k(ideal), DCG@k = ``sum_{i<=k} (2^y_(i) - 1) / log2(i + 1)``.

The official script sorts with ``np.argsort(scores)[::-1]``; this module does the same, so tied scores are broken
identically. Leaderboard submissions carry *ranks* (``prediction.txt``: ``<impression_id> [r1,r2,...]``, rank 1 = most
likely click) and the script scores them as ``1 / rank``; ``write_prediction`` / ``score_prediction_file`` do that.

Single-class impressions: every labelled impression of MIND has at least one click and one non-click, and the official
script has no rule for the other case (``roc_auc_score`` raises on it, and MRR/nDCG divide by zero when nothing was
clicked). Here such impressions are *skipped* for all four metrics and counted in ``n_single_class`` (or, with
``single_class="raise"``, rejected like the official script); impressions with no labels (test) are ignored as the
official script ignores "masked" impressions.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

METRIC_KEYS = ("auc", "mrr", "ndcg@5", "ndcg@10")


def _order(scores: np.ndarray) -> np.ndarray:
    return np.argsort(scores)[::-1]  # descending score, official tie-breaking


def dcg_score(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    y = np.take(labels, _order(scores)[:k])  # (min(k, n),)
    return float(np.sum((2.0 ** y - 1.0) / np.log2(np.arange(len(y)) + 2.0)))


def ndcg_score(labels: np.ndarray, scores: np.ndarray, k: int) -> float:
    return dcg_score(labels, scores, k) / dcg_score(labels, labels, k)


def mrr_score(labels: np.ndarray, scores: np.ndarray) -> float:
    y = np.take(labels, _order(scores))  # (n,)
    return float(np.sum(y / (np.arange(len(y)) + 1.0)) / np.sum(y))


def impression_metrics(labels: Sequence[float], scores: Sequence[float]) -> dict[str, float]:
    """The four MIND metrics of one impression with at least one clicked and one non-clicked candidate."""
    y, s = np.asarray(labels, dtype=np.float64), np.asarray(scores, dtype=np.float64)
    if y.shape != s.shape or y.ndim != 1:
        raise ValueError(f"labels {y.shape} and scores {s.shape} must be 1-d of equal length")
    return {"auc": float(roc_auc_score(y, s)), "mrr": mrr_score(y, s),
            "ndcg@5": ndcg_score(y, s, 5), "ndcg@10": ndcg_score(y, s, 10)}


def mean_impression_metrics(impressions: Iterable[tuple[Sequence[float], Sequence[float]]], *,
                            single_class: str = "skip") -> dict[str, float]:
    """Average ``impression_metrics`` over ``(labels, scores)`` pairs.

    Returns the four metrics plus ``n_impressions`` (scored) and ``n_single_class`` (skipped: all clicked or none).
    """
    if single_class not in ("skip", "raise"):
        raise ValueError(f"single_class={single_class!r} is not one of ['skip', 'raise']")
    sums, n, n_single = dict.fromkeys(METRIC_KEYS, 0.0), 0, 0
    for labels, scores in impressions:
        y = np.asarray(labels, dtype=np.float64)
        if y.size == 0:  # unlabelled / masked impression
            continue
        if y.min() == y.max():
            if single_class == "raise":
                raise ValueError(f"impression with a single class (labels {y.tolist()[:10]}): AUC is undefined")
            n_single += 1
            continue
        for k, v in impression_metrics(y, scores).items():
            sums[k] += v
        n += 1
    out = {k: (v / n if n else float("nan")) for k, v in sums.items()}
    return {**out, "n_impressions": n, "n_single_class": n_single}


def scores_to_ranks(scores: Sequence[float]) -> list[int]:
    """Scores -> 1-based ranks (1 = highest score), ties broken by the official ``argsort(...)[::-1]`` order."""
    order = _order(np.asarray(scores, dtype=np.float64))
    ranks = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(1, len(order) + 1)
    return ranks.tolist()


def _line(impression_id: str, values: Sequence[int]) -> str:
    return f"{impression_id} {json.dumps([int(v) for v in values], separators=(',', ':'))}\n"


def write_prediction(path: str | Path, rows: Iterable[tuple[str, Sequence[float]]]) -> Path:
    """Write the leaderboard ``prediction.txt``: one ``<impression_id> [r1,r2,...]`` line per impression, in order."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for imp_id, scores in rows:
            f.write(_line(imp_id, scores_to_ranks(scores)))
    return path


def write_truth(path: str | Path, rows: Iterable[tuple[str, Sequence[int]]]) -> Path:
    """Write the official ``truth.txt``: ``<impression_id> [l1,l2,...]`` (``[]`` for unlabelled impressions)."""
    path = Path(path)
    with open(path, "w") as f:
        for imp_id, labels in rows:
            f.write(_line(imp_id, labels))
    return path


def _parse(line: str, where: str) -> tuple[str, list[int]]:
    try:
        imp_id, values = line.strip("\n").split()
        return imp_id, json.loads(values)
    except ValueError as e:
        raise ValueError(f"{where}: expected '<impression_id> [v1,v2,...]' without spaces in the list: {e}") from e


def score_prediction_file(truth_path: str | Path, prediction_path: str | Path, *,
                          single_class: str = "skip") -> dict[str, float]:
    """Score a ``prediction.txt`` against a ``truth.txt`` the way the official script does (score = 1 / rank)."""
    pairs = []
    with open(truth_path) as ft, open(prediction_path) as fp:
        for lineno, lt in enumerate(ft, start=1):
            imp_id, labels = _parse(lt, f"{truth_path}:{lineno}")
            lp = fp.readline()
            if not labels:
                continue
            sub_id, ranks = (imp_id, [1] * len(labels)) if lp == "" else _parse(lp, f"{prediction_path}:{lineno}")
            if sub_id != imp_id or len(ranks) != len(labels):
                raise ValueError(f"{prediction_path}:{lineno}: impression {sub_id} with {len(ranks)} ranks does not "
                                 f"match truth impression {imp_id} with {len(labels)} labels")
            pairs.append((labels, [1.0 / r for r in ranks]))
    return mean_impression_metrics(pairs, single_class=single_class)
