"""Reference for ``transformer``: explicit QK^T / sqrt(dh), masked softmax, weighted sum (causal: keys j <= i)."""
from __future__ import annotations

import math

import torch


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh = m.n_heads, m.d_head
    q, k, v = m.qkv(x).split(D, dim=-1)
    out = torch.zeros_like(x)
    for hd in range(h):
        sl = slice(hd * dh, (hd + 1) * dh)
        s = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(dh)  # (B, N, N)
        if mask is not None:
            s = s.masked_fill(~mask[:, None, :], float("-inf"))
        if m.causal:  # key j > i never seen; a padded query row keeps itself (outputs there are unspecified)
            later = torch.ones(N, N, dtype=torch.bool).triu(1)
            s = s.masked_fill(later, float("-inf"))
            s = torch.where(torch.eye(N, dtype=torch.bool) & s.isinf(), torch.zeros_like(s), s)
        out[..., sl] = torch.softmax(s, -1) @ v[..., sl]
    return m.out(out)
