"""Synthetic probes: tasks that need token-token interactions, and a control that pooling alone can solve.

Every item is ``(ids: (L,) int64, target, mask: (L,) bool)`` with token 0 = padding and ``mask`` True at real tokens.
``target`` is an int (``level="sequence"``: one label per sequence) or an ``(L,)`` int64 array (``level="token"``:
per-position labels, ``IGNORE = -100`` where nothing is asked). Item ``idx`` of split ``split`` is drawn from
``numpy.random.default_rng([seed, split_code, idx])``: deterministic, independent of the dataset size (a larger set
extends a smaller one) and of the other splits, and valid at any ``seq_len``. MQAR is generated vectorised, in blocks of
``BLOCK`` items drawn from ``default_rng([seed, split_code, BLOCK_TAG, block])`` (item ``idx`` is row ``idx % BLOCK``
of block ``idx // BLOCK``): the same properties, ~100x faster, so recall probes can train on fresh sequences every
epoch (``ProbeDataset(start=...)``; configs/data/probe_mqar.yaml ``fresh_per_epoch``).

Probes (``PROBES``):

* ``mqar`` -- multi-query associative recall (Zoology, Arora et al. 2023). ``n_pairs`` distinct keys, each followed
  by its (distinct) value, then ``n_queries`` of those keys again at random positions of the remaining ``BLANK`` tokens.
  Token level: at each query position the target is the paired value's id (``n_classes = vocab``). Keys are
  ``[2, 2 + (vocab-2)//2)``, values the rest. Needs a lookup of one token by another: a per-pair interaction.
* ``mqar_zoology`` -- MQAR with Zoology's data distribution (Arora et al. 2023, section 3 / appendix; implemented from
  the description, not from its code), for causal language models. Keys are ids ``[1, vocab/2)``, values
  ``[vocab/2, vocab)``; the ``n_pairs`` key-value pairs (distinct keys, distinct values) fill positions
  ``0 .. 2*n_pairs - 1`` as ``k v k v ...``. The rest holds ``(L - 2*n_pairs) // 2`` query slots, slot ``g`` at position
  ``2*n_pairs + 2*g``: every key is queried once, at a slot drawn without replacement with probability proportional
  to ``(g + 1) ** (power_a - 1)`` (a power law: with ``power_a = 0.01`` most queries sit close after the pairs, a few
  far). The target at a query position is the queried key's value (the next token a causal LM must predict; the
  value itself is never shown there); every other position holds a token drawn uniformly from ``[1, vocab)`` -- so
  keys also recur as distractors, as in Zoology. Id 0 is never drawn (it is this module's padding; Zoology draws
  from ``[0, vocab)``), so every position is real.
* ``dup`` -- duplicate detection, sequence level, balanced binary labels. ``mode="any"``: ``L`` distinct symbols, and
  for label 1 one position is overwritten with the symbol of another (exactly one repeated pair): "is any token
  repeated?" -- needs all pairs compared. ``mode="query"``: position 0 holds a query symbol, positions 1..L-1 distinct
  other symbols, and for label 1 one of them is overwritten with the query: "does the query token occur again?" -- a
  single query, which one pooled vector plus per-token gating can in principle answer.
  Both need ``vocab - 1 >= L``; keep ``vocab`` well above ``d_model`` so a bag-of-tokens summary cannot be exact.
* ``majority`` -- control. ``L`` tokens over ``n_symbols`` symbols, a planted winner drawn with probability
  ``1/n_symbols + margin`` (others uniform), then ties broken in the winner's favour so its count is the unique
  maximum. Label = winner. A mean over one-hot tokens (pooling) solves it exactly.
* ``listops`` -- the Long Range Arena ListOps grammar (Nangia & Bowman 2018; Tay et al. 2021): nested
  ``[MAX``, ``[MIN``, ``[MED`` (integer median of the arguments, rounded down), ``[SM`` (sum mod 10) over digits 0-9,
  closed by ``]``; label = value (10 classes). Trees are redrawn until they fit in ``seq_len`` tokens; the rest is
  padding.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from fastformer.data.schema import options_from_cfg

PAD, BLANK, IGNORE = 0, 1, -100
SPLITS = {"train": 0, "val": 1, "test": 2}


@dataclass(kw_only=True)
class ProbeOptions:
    """The probe ``data`` config node (configs/data/probe_*.yaml document each key); also the config schema's ``data``
    keys for task=probe (fastformer/config_schema.py), so the two cannot drift."""
    name: str
    probe: str                                  # a key of PROBES
    seq_len: int
    n_train: int
    n_eval: int
    data_seed: int = 0
    params: dict[str, Any] = field(default_factory=dict)   # the generator's keyword arguments
    fresh_per_epoch: bool = False
    run_tag: str = ""                           # appended to run dirs / table keys (e.g. the number of pairs)

    @classmethod
    def from_cfg(cls, cfg: Any) -> ProbeOptions:
        o = options_from_cfg(cls, cfg, required=("name", "probe", "seq_len", "n_train", "n_eval"), example="...")
        o.params = dict(o.params or {})
        return o


@dataclass(frozen=True)
class ProbeInfo:
    vocab_size: int  # input vocabulary, padding included
    n_classes: int
    level: str  # "token" | "sequence"


# --------------------------------------------------------------------------------------------------- generators
def mqar(rng: np.random.Generator, seq_len: int, *, n_pairs: int = 8, vocab: int = 256,
         n_queries: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    n_keys, n_q = _check_mqar(seq_len, n_pairs, vocab, n_queries)
    keys = 2 + rng.choice(n_keys, n_pairs, replace=False)  # (P,)
    values = 2 + n_keys + rng.choice(vocab - 2 - n_keys, n_pairs, replace=False)  # (P,)
    ids = np.full(seq_len, BLANK, dtype=np.int64)
    ids[0:2 * n_pairs:2], ids[1:2 * n_pairs:2] = keys, values
    which = rng.permutation(n_pairs)[:n_q]  # which pairs are queried
    pos = 2 * n_pairs + np.sort(rng.choice(seq_len - 2 * n_pairs, n_q, replace=False))  # query positions
    ids[pos] = keys[which]
    target = np.full(seq_len, IGNORE, dtype=np.int64)
    target[pos] = values[which]
    return ids, target


def _check_mqar(seq_len: int, n_pairs: int, vocab: int, n_queries: int | None) -> tuple[int, int]:
    """-> (number of key ids, number of queries); raises naming the option to change."""
    n_keys = (vocab - 2) // 2
    n_q = n_pairs if n_queries is None else n_queries
    if n_pairs > n_keys or n_pairs > vocab - 2 - n_keys:
        raise ValueError(f"mqar: n_pairs={n_pairs} needs vocab >= {2 * n_pairs + 2} (got vocab={vocab})")
    if 2 * n_pairs + n_q > seq_len or n_q > n_pairs:
        raise ValueError(f"mqar: seq_len={seq_len} must be >= 2*n_pairs + n_queries = {2 * n_pairs + n_q} "
                         f"and n_queries <= n_pairs; raise seq_len or lower n_pairs")
    return n_keys, n_q


def mqar_block(rng: np.random.Generator, n: int, seq_len: int, *, n_pairs: int = 8, vocab: int = 256,
               n_queries: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``n`` MQAR items at once -> ``ids (n, L)``, ``target (n, L)``; the same distribution as ``mqar``."""
    n_keys, n_q = _check_mqar(seq_len, n_pairs, vocab, n_queries)

    def pick(n_from: int, k: int) -> np.ndarray:  # (n, k): k distinct draws from range(n_from) per row
        return np.argsort(rng.random((n, n_from)), axis=1)[:, :k]

    keys = 2 + pick(n_keys, n_pairs)  # (n, P)
    values = 2 + n_keys + pick(vocab - 2 - n_keys, n_pairs)  # (n, P)
    ids = np.full((n, seq_len), BLANK, dtype=np.int64)
    ids[:, 0:2 * n_pairs:2], ids[:, 1:2 * n_pairs:2] = keys, values
    which = pick(n_pairs, n_q)  # (n, Q): which pairs are queried
    pos = 2 * n_pairs + np.sort(pick(seq_len - 2 * n_pairs, n_q), axis=1)  # (n, Q): query positions
    rows = np.arange(n)[:, None]
    ids[rows, pos] = keys[rows, which]
    target = np.full((n, seq_len), IGNORE, dtype=np.int64)
    target[rows, pos] = values[rows, which]
    return ids, target


def mqar_zoology_block(rng: np.random.Generator, n: int, seq_len: int, *, n_pairs: int = 4, vocab: int = 8192,
                       power_a: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """``n`` items of Zoology's MQAR (module docstring) -> ``ids (n, L)``, ``target (n, L)`` (IGNORE but at queries)."""
    half = vocab // 2
    slots = (seq_len - 2 * n_pairs) // 2
    if n_pairs > half - 1 or n_pairs > vocab - half:
        raise ValueError(f"mqar_zoology: n_pairs={n_pairs} needs vocab >= {2 * n_pairs + 2} (got vocab={vocab})")
    if slots < n_pairs:
        raise ValueError(f"mqar_zoology: seq_len={seq_len} leaves {slots} query slots for n_pairs={n_pairs}; "
                         f"needs seq_len >= 4 * n_pairs")
    if not 0 < power_a <= 1:
        raise ValueError(f"mqar_zoology: power_a={power_a} must be in (0, 1]")

    def pick(n_from: int, k: int) -> np.ndarray:  # (n, k): k distinct draws from range(n_from) per row
        return np.argsort(rng.random((n, n_from)), axis=1)[:, :k]

    keys = 1 + pick(half - 1, n_pairs)  # (n, P) in [1, vocab/2)
    values = half + pick(vocab - half, n_pairs)  # (n, P) in [vocab/2, vocab)
    ids = 1 + rng.integers(vocab - 1, size=(n, seq_len))  # filler: uniform over [1, vocab)
    ids[:, 0:2 * n_pairs:2], ids[:, 1:2 * n_pairs:2] = keys, values
    # P distinct slots per row with probability ~ (g+1)^(a-1), without replacement: the Gumbel top-k trick (the k
    # largest of log p_g + Gumbel noise are a draw of k items without replacement, in draw order)
    logp = (power_a - 1.0) * np.log(np.arange(1, slots + 1))  # (S,) unnormalised
    gumbel = -np.log(-np.log(rng.random((n, slots))))
    gaps = np.argsort(-(logp[None] + gumbel), axis=1)[:, :n_pairs]  # (n, P): slot of key i's query
    rows = np.arange(n)[:, None]
    pos = 2 * n_pairs + 2 * gaps
    ids[rows, pos] = keys
    target = np.full((n, seq_len), IGNORE, dtype=np.int64)
    target[rows, pos] = values
    return ids.astype(np.int64), target


def _mqar_zoology_item(rng: np.random.Generator, seq_len: int, **params) -> tuple[np.ndarray, np.ndarray]:
    ids, target = mqar_zoology_block(rng, 1, seq_len, **params)
    return ids[0], target[0]


def dup(rng: np.random.Generator, seq_len: int, *, vocab: int = 1024, mode: str = "any") -> tuple[np.ndarray, int]:
    if mode not in ("any", "query"):
        raise ValueError(f"dup: mode={mode!r} is not one of ['any', 'query']")
    if vocab - 1 < seq_len:
        raise ValueError(f"dup: needs vocab - 1 >= seq_len distinct symbols (vocab={vocab}, seq_len={seq_len})")
    ids = 1 + rng.choice(vocab - 1, seq_len, replace=False).astype(np.int64)  # (L,) distinct symbols
    label = int(rng.integers(2))
    if label:
        if mode == "any":
            i, j = rng.choice(seq_len, 2, replace=False)
            ids[j] = ids[i]
        else:
            ids[1 + rng.integers(seq_len - 1)] = ids[0]
    return ids, label


def majority(rng: np.random.Generator, seq_len: int, *, n_symbols: int = 8,
             margin: float = 0.1) -> tuple[np.ndarray, int]:
    if not 0.0 <= margin <= 1.0 - 1.0 / n_symbols:
        raise ValueError(f"majority: margin={margin} must be in [0, 1 - 1/n_symbols]")
    winner = int(rng.integers(n_symbols))
    p = np.full(n_symbols, (1.0 - 1.0 / n_symbols - margin) / (n_symbols - 1))
    p[winner] = 1.0 / n_symbols + margin
    sym = rng.choice(n_symbols, seq_len, p=p)  # (L,) in [0, n_symbols)
    counts = np.bincount(sym, minlength=n_symbols)
    for other in np.flatnonzero(counts >= counts[winner]):  # make the winner the unique maximum
        while other != winner and counts[other] >= counts[winner]:
            sym[np.flatnonzero(sym == other)[0]] = winner
            counts[other] -= 1
            counts[winner] += 1
    return (1 + sym).astype(np.int64), winner


_OPS = ("MAX", "MIN", "MED", "SM")
_DIGIT0, _OP0, _CLOSE = 1, 11, 15  # ids: digits 1..10, [MAX [MIN [MED [SM 11..14, ] 15


def _listops_tree(rng: np.random.Generator, depth: int, max_depth: int, max_args: int,
                  value_p: float) -> tuple[list[int], int]:
    """-> (token ids, value). The root (depth 0) is an operator, as in LRA; below it a node is an operator with
    probability ``value_p`` and a digit otherwise (always a digit at ``max_depth``)."""
    if depth >= max_depth or (depth > 0 and rng.random() > value_p):
        d = int(rng.integers(10))
        return [_DIGIT0 + d], d
    op = int(rng.integers(len(_OPS)))
    toks, vals = [_OP0 + op], []
    for _ in range(int(rng.integers(2, max_args + 1))):
        t, v = _listops_tree(rng, depth + 1, max_depth, max_args, value_p)
        toks += t
        vals.append(v)
    value = {"MAX": max, "MIN": min, "MED": lambda a: int(np.floor(np.median(a))),
             "SM": lambda a: sum(a) % 10}[_OPS[op]](vals)
    return toks + [_CLOSE], value


def listops(rng: np.random.Generator, seq_len: int, *, max_depth: int = 6, max_args: int = 5,
            value_p: float = 0.25, min_len: int = 1) -> tuple[np.ndarray, int]:
    for _ in range(10_000):
        toks, value = _listops_tree(rng, 0, max_depth, max_args, value_p)
        if min_len <= len(toks) <= seq_len:
            ids = np.full(seq_len, PAD, dtype=np.int64)
            ids[:len(toks)] = toks
            return ids, value
    raise ValueError(f"listops: no tree of {min_len}..{seq_len} tokens in 10000 draws; lower max_depth/max_args")


@dataclass(frozen=True)
class Probe:
    fn: Callable
    info: Callable[..., ProbeInfo]


BLOCK, BLOCK_TAG = 1024, 7919  # items per vectorised block; a constant that keeps block seeds apart from item seeds
# probes generated in blocks (see the module docstring)
BLOCK_FNS: dict[str, Callable] = {"mqar": mqar_block, "mqar_zoology": mqar_zoology_block}

PROBES: dict[str, Probe] = {
    "mqar": Probe(mqar, lambda vocab=256, **_: ProbeInfo(vocab, vocab, "token")),
    "mqar_zoology": Probe(_mqar_zoology_item, lambda vocab=8192, **_: ProbeInfo(vocab, vocab, "token")),
    "dup": Probe(dup, lambda vocab=1024, **_: ProbeInfo(vocab, 2, "sequence")),
    "majority": Probe(majority, lambda n_symbols=8, **_: ProbeInfo(n_symbols + 1, n_symbols, "sequence")),
    "listops": Probe(listops, lambda **_: ProbeInfo(_CLOSE + 1, 10, "sequence")),
}


def probe_info(kind: str, **params) -> ProbeInfo:
    if kind not in PROBES:
        raise KeyError(f"unknown probe {kind!r}; valid probes: {sorted(PROBES)}")
    return PROBES[kind].info(**params)


def make_item(kind: str, seq_len: int, *, seed: int, split: str, idx: int, **params):
    """One item ``(ids (L,), target, mask (L,))`` of probe ``kind``, deterministic in (seed, split, idx)."""
    _check_kind_split(kind, split)
    if kind in BLOCK_FNS:
        ids, target = _block(kind, seq_len, seed, split, idx // BLOCK, params)
        ids, target = ids[idx % BLOCK], target[idx % BLOCK]
    else:
        rng = np.random.default_rng([seed, SPLITS[split], idx])
        ids, target = PROBES[kind].fn(rng, seq_len, **params)
    return ids, target, ids != PAD


def _check_kind_split(kind: str, split: str) -> None:
    if kind not in PROBES:
        raise KeyError(f"unknown probe {kind!r}; valid probes: {sorted(PROBES)}")
    if split not in SPLITS:
        raise KeyError(f"unknown split {split!r}; valid splits: {list(SPLITS)}")


def _block(kind: str, seq_len: int, seed: int, split: str, block: int, params: dict) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, SPLITS[split], BLOCK_TAG, block])
    return BLOCK_FNS[kind](rng, BLOCK, seq_len, **params)


class ProbeDataset(Dataset):
    """Items ``start .. start + n_samples - 1`` of probe ``kind``, generated up front; items are dicts
    ``{ids, mask, target}`` of tensors. ``start`` lets a run draw fresh training sequences every epoch."""

    def __init__(self, kind: str, *, seq_len: int, n_samples: int, seed: int, split: str, start: int = 0, **params):
        self.kind, self.seq_len, self.params = kind, seq_len, params
        self.info = probe_info(kind, **params)
        _check_kind_split(kind, split)
        if kind in BLOCK_FNS:
            end = start + n_samples
            blocks = [_block(kind, seq_len, seed, split, b, params) for b in range(start // BLOCK, -(-end // BLOCK))]
            lo = start - (start // BLOCK) * BLOCK
            ids = (np.concatenate([b[0] for b in blocks])[lo:lo + n_samples] if blocks
                   else np.zeros((0, seq_len), np.int64))
            target = np.concatenate([b[1] for b in blocks])[lo:lo + n_samples] if blocks else ids.copy()
        else:
            items = [make_item(kind, seq_len, seed=seed, split=split, idx=start + i, **params)
                     for i in range(n_samples)]
            ids = np.stack([it[0] for it in items])
            target = np.stack([np.asarray(it[1]) for it in items])
        self.ids = torch.from_numpy(ids)  # (n, L)
        self.target = torch.as_tensor(target, dtype=torch.long)  # (n,) | (n, L)
        self.mask = self.ids != PAD  # (n, L) bool

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"ids": self.ids[i], "mask": self.mask[i], "target": self.target[i]}
