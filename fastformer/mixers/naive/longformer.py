"""Reference for ``longformer``: dense N x N masks, one head and one row of the batch at a time.

Ordinary query i (not global) may attend key j iff j is real and (|i - j| <= window // 2 or j is global), scored with
``query``/``key`` and summed over ``value``. A global query (one of the first ``n_global`` real positions) attends every
real key with ``query_global``/``key_global``/``value_global``. Padded query rows are left at zero.
Causal (``n_global`` = 0): the band keeps only keys j <= i, i.e. i - window // 2 <= j <= i.
"""
from __future__ import annotations

import math

import torch


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
    """q: (R, dh), k, v: (N, dh), allowed: (R, N) bool -> (R, dh)."""
    s = (q @ k.T / math.sqrt(q.shape[-1])).masked_fill(~allowed, float("-inf"))
    return torch.softmax(s, dim=-1) @ v


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh, w = m.n_heads, m.d_head, m.one_sided
    real_all = torch.ones(B, N, dtype=torch.bool) if mask is None else mask.cpu().bool()
    pos = torch.arange(N)
    near = (pos[:, None] - pos[None, :]).abs() <= w  # (N, N) sliding window
    if m.causal:
        near = near & (pos[None, :] <= pos[:, None])  # the band's past half and the diagonal
    rows = []
    for b in range(B):
        real = real_all[b]
        is_global = real & (pos < m.n_global)  # (N,)
        allowed_local = real[None, :] & (near | is_global[None, :])  # (N, N)
        allowed_global = real[None, :].expand(N, N)
        q, k, v = m.query(x[b]), m.key(x[b]), m.value(x[b])  # (N, D)
        if m.n_global:
            qg, kg, vg = m.query_global(x[b]), m.key_global(x[b]), m.value_global(x[b])
        y = torch.zeros(N, D, dtype=x.dtype)
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)
            for i in range(N):
                if not real[i]:
                    continue
                if is_global[i]:
                    y[i, sl] = _attend(qg[i:i + 1, sl], kg[:, sl], vg[:, sl], allowed_global[i:i + 1])[0]
                else:
                    y[i, sl] = _attend(q[i:i + 1, sl], k[:, sl], v[:, sl], allowed_local[i:i + 1])[0]
        rows.append(y)
    return m.out(torch.stack(rows))  # (B, N, D)
