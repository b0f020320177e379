"""Token interaction of a trained encoder's first mixer layer, measured by autograd.

For one input sequence, ``h`` = the stream the first block reads (``Encoder.stem``) and ``y = mixer(norm1(h))`` the
first mixer's output (the token mixing alone, before the residual). The token-to-token sensitivity is

    J[i, j] = || d y_i / d h_j ||_F        (an (N, N) matrix over the real tokens; exact, from the full Jacobian)

and its effective rank is the number of singular values needed for 90% / 99% of the squared-singular-value energy,
reported for J and for its off-diagonal part (J with the diagonal zeroed: how token i depends on the *other* tokens).
The review of Fastformer predicts "diagonal + rank 1": token mixing through one pooled vector per head means every
y_i sees the other tokens only through the same global summary. Softmax attention has no such bound.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


def first_mixer_sensitivity(model, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``model``: a TextClassifier/ProbeModel (``.embed``, ``.encoder``); ``ids``, ``mask``: (N,) one sequence.
    -> J (n, n) over its n real tokens (float64)."""
    enc = model.encoder
    block = enc.layers[0]
    keep = mask.bool()
    ids, mask = ids[keep][None], mask[keep][None]  # (1, n): real tokens only
    with torch.no_grad():
        h = enc.stem(model.embed(ids), mask)[0]  # (n, D)

    def mix(hh: torch.Tensor) -> torch.Tensor:
        z = hh[None]
        return block.mixer(block.norm1(z) if block.pre else z, mask)[0]  # (n, D)

    jac = torch.autograd.functional.jacobian(mix, h, vectorize=True)  # (n, D, n, D)
    return jac.double().pow(2).sum(dim=(1, 3)).sqrt()  # (n, n)


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


def run_interaction(run_dir, n_seqs: int = 8, split: str = "test") -> dict:
    """Token interaction of a finished probe run (its .hydra/config.yaml and checkpoints/best.pt), averaged over the
    first ``n_seqs`` sequences of ``split``; cached as ``<run_dir>/interaction.json`` (written atomically)."""
    import json
    from pathlib import Path

    import hydra
    from omegaconf import OmegaConf

    from fastformer.utils import atomic_write_json

    run_dir = Path(run_dir)
    cache = run_dir / "interaction.json"
    if cache.exists():
        return json.loads(cache.read_text())
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    task = hydra.utils.get_class(cfg.task._target_)(cfg)
    task.setup()
    model = task.build_model()
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu",
                                     weights_only=False)["model"])
    model.eval()
    ds = task.dataset(split)
    jm = [first_mixer_sensitivity(model, ds[i]["ids"], ds[i]["mask"]) for i in range(min(n_seqs, len(ds)))]
    out = {**Interaction.of(jm).__dict__, "n_seqs": len(jm), "split": split,
           "mean_J": torch.stack(jm).mean(0).tolist() if len({j.shape for j in jm}) == 1 else None}
    atomic_write_json(cache, out)
    return out
