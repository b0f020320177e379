"""Reference for ``linear_transformer``: the explicit quadratic form of Eq. 6 (Katharopoulos et al. 2020),
out_i = sum_j sim(q_i, k_j) v_j / (sum_j sim(q_i, k_j) + eps) with sim(q, k) = phi(q)^T phi(k), phi = elu + 1,
computed as an N x N similarity matrix per head with padded keys dropped (causal: and keys j > i)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh = m.n_heads, m.d_head
    q, k, v = m.qkv(x).split(D, dim=-1)  # 3 x (B, N, D)
    out = torch.zeros_like(x)
    for hd in range(h):
        sl = slice(hd * dh, (hd + 1) * dh)
        fq, fk = F.elu(q[..., sl]) + 1, F.elu(k[..., sl]) + 1  # (B, N, dh)
        sim = fq @ fk.transpose(1, 2)  # (B, N, N): sim[b, i, j] = phi(q_i) . phi(k_j)
        if mask is not None:
            sim = sim * mask[:, None, :].to(sim.dtype)
        if m.causal:
            sim = sim * torch.ones(N, N, dtype=sim.dtype).tril()
        out[..., sl] = (sim @ v[..., sl]) / (sim.sum(-1, keepdim=True) + m.eps)
    return m.out(out)
