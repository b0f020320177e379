"""Reference for ``performer``: FAVOR+ written densely per head from the mixer's own projection buffer, without the
stabilising shifts: phi(x) = exp(W x' - |x'|^2/2) / sqrt(m), x' = x dh^-1/4, A_ij = phi(q_i).phi(k_j) over real keys
(an explicit N x N matrix; causal: times the lower-triangular mask, keys j <= i), out = A V / rowsum(A)."""
from __future__ import annotations

import math

import torch


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh = m.n_heads, m.d_head
    w = m.projection.to(x.dtype)  # (m, dh)
    n_feat = w.shape[0]
    q, k, v = m.qkv(x).split(D, dim=-1)  # 3 x (B, N, D)

    def phi(t):  # (B, N, dh) -> (B, N, m)
        t = t / dh ** 0.25
        return torch.exp(t @ w.T - (t * t).sum(-1, keepdim=True) / 2) / math.sqrt(n_feat)

    keep = torch.ones(B, N, N, dtype=x.dtype) if mask is None else mask[:, None, :].to(x.dtype).expand(B, N, N)
    if m.causal:
        keep = keep * torch.ones(N, N, dtype=x.dtype).tril()  # (B, N, N): 1 where query i may see key j
    no_key = (keep.sum(-1, keepdim=True) == 0).to(x.dtype)  # (B, N, 1) a (padded) query with no key: 0 / 1, not 0 / 0
    out = torch.zeros_like(x)
    for hd in range(h):
        sl = slice(hd * dh, (hd + 1) * dh)
        a = phi(q[..., sl]) @ phi(k[..., sl]).transpose(1, 2) * keep  # (B, N, N) approximate exp(q.k / sqrt(dh))
        out[..., sl] = (a @ v[..., sl]) / (a.sum(-1, keepdim=True) + no_key)
    return m.out(out)
