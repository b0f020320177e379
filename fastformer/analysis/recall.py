"""Which key-value pairs a trained MQAR model recalls: accuracy by the queried pair's place in the context.

Zoology's MQAR (fastformer/data/probes.py ``mqar_zoology``) puts the P key-value pairs first, at fixed positions
(pair p: key at 2p, value at 2p + 1), then queries every key once at a later position. A model that recalls by
content answers every pair alike; one that has learned to read a fixed position (the value at position 1, say) answers
that pair and guesses the rest. Accuracy split by pair tells the two apart, where the overall accuracy cannot.

:func:`run_recall_by_pair` measures a finished causal-MQAR run dir (its checkpoints/best.pt) on its test split and
caches the counts as ``<run_dir>/recall_by_pair.json`` (committed with the run outcomes, like interaction.json).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from fastformer.data.probes import IGNORE

CACHE = "recall_by_pair.json"


def tally_by_pair(ids: np.ndarray, target: np.ndarray, correct: np.ndarray, n_pairs: int) -> dict[str, list[int]]:
    """``ids``, ``target``: (B, L) Zoology-layout sequences (IGNORE where nothing is asked); ``correct``: (M,) bool,
    one per asked position in row-major order (as ``target[target != IGNORE]``). -> counts per pair index p (key at
    position 2p) and per query order (1st .. P-th query of the sequence): ``{"pair_correct", "pair_asked",
    "order_correct", "order_asked"}``, lists of length ``n_pairs``."""
    asked = target != IGNORE
    rows, pos = np.nonzero(asked)  # row-major, as target[asked]
    if len(rows) != len(correct):
        raise ValueError(f"tally_by_pair: {len(correct)} outcomes for {len(rows)} asked positions")
    keys = ids[:, 0:2 * n_pairs:2]  # (B, P)
    match = keys[rows] == ids[rows, pos][:, None]  # (M, P): the queried key's pair
    if not (match.sum(1) == 1).all():
        raise ValueError("tally_by_pair: a query matches no key (or several) of its sequence's first "
                         f"{n_pairs} pairs: not the mqar_zoology layout")
    pair = match.argmax(1)
    order = np.concatenate([np.arange(n) for n in asked.sum(1)])  # k-th asked position of its row
    c = np.asarray(correct, dtype=np.int64)

    def count(idx: np.ndarray, weight: np.ndarray) -> list[int]:
        return np.bincount(idx, weights=weight, minlength=n_pairs).astype(int).tolist()

    return {"pair_correct": count(pair, c), "pair_asked": count(pair, np.ones_like(c)),
            "order_correct": count(order, c), "order_asked": count(order, np.ones_like(c))}


def run_recall_by_pair(run_dir: str | os.PathLike, split: str = "test", batch_size: int = 256) -> dict:
    """Counts of :func:`tally_by_pair` for a finished causal-MQAR run over its whole ``split``, with ``acc`` (all
    queries; equals the run's recorded test accuracy) and ``acc_by_pair`` / ``acc_by_order`` (%); cached as
    ``<run_dir>/recall_by_pair.json`` (atomic; a cached file is returned as it is)."""
    from fastformer.analysis.checkpoint import load_trained
    from fastformer.utils import atomic_write_text

    run_dir = Path(run_dir)
    cache = run_dir / CACHE
    if cache.exists():
        return json.loads(cache.read_text())
    cfg, task, model = load_trained(run_dir)
    params = dict(cfg.data.get("params") or {})
    if cfg.data.get("probe") != "mqar_zoology":
        raise ValueError(f"{run_dir}: data.probe={cfg.data.get('probe')!r}, not mqar_zoology (the layout this reads)")
    n_pairs = int(params.get("n_pairs", 4))
    ds = task.dataset(split)
    totals: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for s in range(0, len(ds), batch_size):
            items = [ds[i] for i in range(s, min(s + batch_size, len(ds)))]
            ids, mask, target = (torch.stack([torch.as_tensor(x[k]) for x in items]) for k in ("ids", "mask", "target"))
            at = target != IGNORE
            correct = (model(ids, mask, at=at).argmax(-1) == target[at]).numpy()
            for k, v in tally_by_pair(ids.numpy(), target.numpy(), correct, n_pairs).items():
                totals[k] = totals.get(k, 0) + np.asarray(v)

    def pct(kind: str) -> list[float | None]:
        return [round(100.0 * int(a) / int(n), 2) if n else None
                for a, n in zip(totals[f"{kind}_correct"], totals[f"{kind}_asked"])]

    out = {"split": split, "n_pairs": n_pairs, "n_seqs": len(ds), **{k: v.tolist() for k, v in totals.items()},
           "acc": 100.0 * int(totals["pair_correct"].sum()) / int(totals["pair_asked"].sum()),
           "acc_by_pair": pct("pair"), "acc_by_order": pct("order")}
    atomic_write_text(cache, json.dumps(out, indent=1) + "\n")
    return out
