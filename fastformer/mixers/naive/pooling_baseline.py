"""Reference for ``pooling_baseline``: the module docstring's equations written token by token and head by head
(causal: token i's context g_i pools the real tokens j <= i)."""
from __future__ import annotations

import math

import torch


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh = m.n_heads, m.d_head
    real_all = torch.ones(B, N, dtype=torch.bool) if mask is None else mask.cpu()
    out = torch.zeros_like(x)
    for b in range(B):
        idx = [i for i in range(N) if real_all[b, i]]
        v = x[b] @ m.value.weight.T + m.value.bias  # (N, D)
        u = torch.zeros_like(v)
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)

            def pool(idx, sl=sl, hd=hd, v=v):
                s = torch.stack([m.w[hd] @ v[i, sl] / math.sqrt(dh) for i in idx])  # scores of the real tokens
                a = torch.exp(s - s.max())
                a = a / a.sum()
                return sum(a[j] * v[i, sl] for j, i in enumerate(idx))  # pooled context of this head

            g_all = None if m.causal else pool(idx)
            for i in range(N):
                if m.causal and not any(j <= i for j in idx):
                    continue  # a padded position before any real one: unspecified
                g = pool([j for j in idx if j <= i]) if m.causal else g_all
                gate = {"sigmoid": 1.0 / (1.0 + torch.exp(-g)), "product": g, "none": torch.ones_like(g)}[m.gate]
                u[i, sl] = gate * v[i, sl] + (g if m.broadcast else 0.0)
        out[b] = u @ m.out.weight.T + m.out.bias + v
    return out
