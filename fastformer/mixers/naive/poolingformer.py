"""Reference for ``poolingformer``: dense masks, explicit per-bucket pooling, one head and one row at a time.

level 1: query i may see key j iff j is real and |i - j| <= window // 2;
level 2: bucket b = positions [b p, b p + p); its key/value is the mean (or max) of the second-level projections of
the first-level outputs over its real tokens; query i may see bucket b iff b holds a real token and
|b p + (p - 1) / 2 - i| <= pool_window / 2.  Output: out(y + z). Padded query rows are left at zero before ``out``.
"""
from __future__ import annotations

import math

import torch


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """q: (dh,), k, v: (K, dh), allowed: (K,) bool -> (dh,)."""
    s = (k @ q / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh, p = m.n_heads, m.d_head, m.pool_size
    real_all = torch.ones(B, N, dtype=torch.bool) if mask is None else mask.cpu().bool()
    pos = torch.arange(N)
    M = -(-N // p)
    centre = torch.arange(M, dtype=torch.float64) * p + (p - 1) / 2  # (M,)
    outs = []
    for b in range(B):
        real = real_all[b]
        q, k, v = m.qkv(x[b]).split(D, dim=-1)  # (N, D)
        y = torch.zeros(N, D, dtype=x.dtype)
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)
            for i in range(N):
                if real[i]:
                    y[i, sl] = _attend(q[i, sl], k[:, sl], v[:, sl], real & ((pos - i).abs() <= m.one_sided))
        q2, k2, v2 = m.qkv_pool(y).split(D, dim=-1)  # (N, D)
        kb, vb = torch.zeros(M, D, dtype=x.dtype), torch.zeros(M, D, dtype=x.dtype)
        valid = torch.zeros(M, dtype=torch.bool)
        for bk in range(M):
            members = [j for j in range(bk * p, min(N, bk * p + p)) if real[j]]
            if not members:
                continue
            valid[bk] = True
            if m.pool == "mean":
                kb[bk], vb[bk] = k2[members].mean(0), v2[members].mean(0)
            else:
                kb[bk], vb[bk] = k2[members].amax(0), v2[members].amax(0)
        z = torch.zeros(N, D, dtype=x.dtype)
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)
            for i in range(N):
                if real[i]:
                    near = (centre - i).abs() <= m.pool_window / 2
                    z[i, sl] = _attend(q2[i, sl], kb[:, sl], vb[:, sl], valid & near)
        outs.append(y + z)
    return m.out(torch.stack(outs))  # (B, N, D)
