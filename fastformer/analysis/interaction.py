"""Token interaction of a trained encoder's first mixer layer, measured by autograd.

For one input sequence, ``h`` = the stream the first block reads (``Encoder.stem``) and ``y = mixer(norm1(h))`` the
first mixer's output (the token mixing alone, before the residual). The token-to-token sensitivity is

    J[i, j] = || d y_i / d h_j ||_F        (an (N, N) matrix over the real tokens; exact, from the full Jacobian)

and its effective rank is the number of singular values needed for 90% / 99% of the squared-singular-value energy,
reported for J and for its off-diagonal part (J with the diagonal zeroed: how token i depends on the *other* tokens).
The review of Fastformer predicts "diagonal + rank 1": token mixing through one pooled vector per head means every
y_i sees the other tokens only through the same global summary. Softmax attention has no such bound.

:func:`run_interaction` measures a finished run dir of any task whose model has ``.embed`` + ``.encoder`` (probe
models, text classifiers): the first ``n_seqs`` sequences of a split, each truncated to its first ``max_tokens`` real
tokens (the Jacobian costs n * D backward passes and n^2 D^2 numbers), as the task's own collate function builds them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def first_mixer_sensitivity(model, ids: torch.Tensor, mask: torch.Tensor, chunk: int = 512) -> torch.Tensor:
    """``model``: a TextClassifier/ProbeModel (``.embed``, ``.encoder``); ``ids``, ``mask``: (N,) one sequence.
    -> J (n, n) over its n real tokens (float64). The exact Jacobian, built from batched vector-Jacobian products of
    about ``chunk`` output coordinates at a time (whole output tokens), so memory stays bounded for long inputs."""
    enc = model.encoder
    block = enc.layers[0]
    keep = mask.bool()
    ids, mask = ids[keep][None], mask[keep][None]  # (1, n): real tokens only
    with torch.no_grad():
        h = enc.stem(model.embed(ids), mask)[0]  # (n, D)

    def mix(hh: torch.Tensor) -> torch.Tensor:
        z = hh[None]
        return block.mixer(block.norm1(z) if block.pre else z, mask)[0]  # (n, D)

    n, d = h.shape
    h = h.detach().requires_grad_(True)
    y = mix(h)  # (n, D)
    per = max(1, chunk // d)  # output tokens per batched backward pass
    rows = []
    for start in range(0, n, per):
        t = min(per, n - start)
        cot = torch.zeros(t, d, n, d, dtype=y.dtype)  # one-hot cotangents of y[start:start+t, :]
        idx = torch.arange(t)
        cot[idx[:, None], torch.arange(d)[None, :], (start + idx)[:, None], torch.arange(d)[None, :]] = 1.0
        (g,) = torch.autograd.grad(y, h, cot.reshape(t * d, n, d), retain_graph=True, is_grads_batched=True)
        rows.append(g.reshape(t, d, n, d).double().pow(2).sum(dim=(1, 3)))  # (t, n)
    return torch.cat(rows).sqrt()  # (n, n)


def effective_rank(m: torch.Tensor, energy: float) -> int:
    """Smallest k with sum_{r<k} s_r^2 >= energy * sum s_r^2 (s = singular values of ``m``)."""
    s2 = torch.linalg.svdvals(m.double()).pow(2)
    if float(s2.sum()) == 0.0:
        return 0
    frac = torch.cumsum(s2, 0) / s2.sum()
    return int((frac < energy - 1e-12).sum()) + 1


@dataclass
class Interaction:
    n_tokens: int
    rank90: float
    rank99: float
    offdiag_rank90: float
    offdiag_rank99: float
    offdiag_share: float  # share of J's squared mass off the diagonal

    @staticmethod
    def of(jmats: list[torch.Tensor]) -> Interaction:
        rows = []
        for j in jmats:
            off = j - torch.diag(torch.diagonal(j))
            rows.append([j.shape[0], effective_rank(j, 0.9), effective_rank(j, 0.99), effective_rank(off, 0.9),
                         effective_rank(off, 0.99), float(off.pow(2).sum() / j.pow(2).sum().clamp_min(1e-300))])
        t = torch.tensor(rows, dtype=torch.float64).mean(0)
        return Interaction(int(t[0]), *map(float, t[1:]))


def round_matrix(rows: list[list[float]], digits: int = 4) -> list[list[float]]:
    """``mean_J`` as stored: ``digits`` significant digits (it is drawn, not computed with; keeps the json small)."""
    return [[float(f"{v:.{digits}g}") for v in row] for row in rows]


def dumps(out: dict) -> str:
    """interaction.json text: the scalars one per line, ``mean_J`` one matrix row per line."""
    import json

    head = json.dumps({k: v for k, v in out.items() if k != "mean_J"}, indent=2)
    if out.get("mean_J") is None:
        return json.dumps(out, indent=2) + "\n"
    rows = ",\n".join("    " + json.dumps(row) for row in out["mean_J"])
    return head[:-2] + ',\n  "mean_J": [\n' + rows + "\n  ]\n}\n"


def _sequence(task, split: str, i: int, max_tokens: int | None) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Item ``i`` of ``split`` as (ids, mask) over its first ``max_tokens`` real tokens, and its full real length.
    Probe items are ``{"ids", "mask"}`` dicts; other tasks' items go through the task's collate function (a batch of
    one: classification's ``pad_collate`` gives ``input_ids`` / ``attention_mask``)."""
    item = task.dataset(split)[i]
    if isinstance(item, dict) and "ids" in item and "mask" in item:
        ids, mask = torch.as_tensor(item["ids"]), torch.as_tensor(item["mask"])
    else:
        collate = task.collate(split)
        if collate is None:
            raise TypeError(f"task {task.name!r}: items of {split!r} are {type(item).__name__}, not ids/mask dicts, "
                            "and the task has no collate function to batch them")
        batch = collate([item])
        ids, mask = batch["input_ids"][0], batch["attention_mask"][0]
    ids = ids[mask.bool()]  # real tokens only, in order
    full = int(ids.numel())
    if max_tokens is not None:
        ids = ids[:max_tokens]
    return ids, torch.ones_like(ids, dtype=torch.bool), full


def run_interaction(run_dir, n_seqs: int = 8, split: str = "test", max_tokens: int | None = 128) -> dict:
    """Token interaction of a finished run (its .hydra/config.yaml and checkpoints/best.pt): probe or classification
    (any task whose model has ``.embed`` + ``.encoder``), averaged over the first ``n_seqs`` sequences of ``split``,
    each cut to its first ``max_tokens`` real tokens (None: whole sequences); cached as ``<run_dir>/interaction.json``
    (written atomically; a cached file is returned as it is, whatever the arguments).

    Data paths in the saved config resolve in the calling environment (``DATA_ROOT``; ``PROJECT_ROOT``, else this
    checkout). ``mean_J``: the mean J over the sequences of the most common length (``mean_J_n`` of them)."""
    import json
    from collections import Counter
    from pathlib import Path

    from fastformer.analysis.checkpoint import load_trained
    from fastformer.utils import atomic_write_text

    run_dir = Path(run_dir)
    cache = run_dir / "interaction.json"
    if cache.exists():
        return json.loads(cache.read_text())
    cfg, task, model = load_trained(run_dir)
    seqs = [_sequence(task, split, i, max_tokens) for i in range(min(n_seqs, len(task.dataset(split))))]
    jm = [first_mixer_sensitivity(model, ids, mask) for ids, mask, _ in seqs]
    common = Counter(j.shape[0] for j in jm).most_common(1)[0][0]
    same = [j for j in jm if j.shape[0] == common]
    full = [n for _, _, n in seqs]
    out = {**Interaction.of(jm).__dict__, "n_seqs": len(jm), "split": split,
           "task": cfg.task.get("name"), "dataset": cfg.data.get("name"),
           "max_tokens": max_tokens, "n_truncated": sum(max_tokens is not None and n > max_tokens for n in full),
           "mean_full_tokens": sum(full) / len(full),
           "mean_J": round_matrix(torch.stack(same).mean(0).tolist()), "mean_J_n": len(same)}
    atomic_write_text(cache, dumps(out))
    return out
