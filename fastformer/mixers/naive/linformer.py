"""Reference for ``linformer``: per head, K_proj = E_i K_i and V_proj = F_i V_i with explicit sums over the real
positions (padded positions are skipped), then softmax(Q K_proj^T / sqrt(dh)) V_proj."""
from __future__ import annotations

import math

import torch


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh = m.n_heads, m.d_head
    q, k, v = m.qkv(x).split(D, dim=-1)  # 3 x (B, N, D)
    F_all = m.E if m.F is None else m.F  # (h|1, k, max_len)
    real = torch.ones(B, N, dtype=torch.bool) if mask is None else mask
    out = torch.zeros_like(x)
    for b in range(B):
        idx = [i for i in range(N) if real[b, i]]
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)
            e, f = m.E[0 if m.E.shape[0] == 1 else hd], F_all[0 if F_all.shape[0] == 1 else hd]  # (k, max_len)
            kp = sum(e[:, i:i + 1] * k[b, i, sl] for i in idx)  # (k, dh): sum_i E[:, i] k_i^T
            vp = sum(f[:, i:i + 1] * v[b, i, sl] for i in idx)  # (k, dh)
            s = q[b, :, sl] @ kp.T / math.sqrt(dh)  # (N, k)
            out[b, :, sl] = torch.softmax(s, -1) @ vp
    return m.out(out)
