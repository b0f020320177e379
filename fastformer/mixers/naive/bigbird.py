"""Reference for ``bigbird``: a dense (N x N) token mask built from the block rules (window, global) and the
mixer's own random blocks, then explicit per-head masked softmax attention."""
from __future__ import annotations

import math

import torch


def dense_block_mask(m, n_blocks: int) -> torch.Tensor:
    """(h, n_blocks, n_blocks) bool: [head, query block, key block] allowed, built block by block."""
    g, w = min(m.n_global_blocks, n_blocks), m.window_blocks // 2
    rnd = m.random_blocks(n_blocks).tolist()  # (h, n_blocks - g, r)
    allowed = torch.zeros(m.n_heads, n_blocks, n_blocks, dtype=torch.bool)
    for hd in range(m.n_heads):
        for i in range(n_blocks):
            for j in range(n_blocks):
                if i < g or j < g or abs(i - j) <= w:
                    allowed[hd, i, j] = True
            if i >= g:
                for j in rnd[hd][i - g]:
                    if j >= 0:
                        allowed[hd, i, j] = True
    return allowed


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh, bs = m.n_heads, m.d_head, m.block_size
    nb = math.ceil(N / bs)
    tok = dense_block_mask(m, nb).repeat_interleave(bs, 1).repeat_interleave(bs, 2)[:, :N, :N]  # (h, N, N)
    real = torch.ones(B, N, dtype=torch.bool) if mask is None else mask
    q, k, v = m.qkv(x).split(D, dim=-1)  # 3 x (B, N, D)
    out = torch.zeros_like(x)
    for b in range(B):
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)
            keep = tok[hd] & real[b][None, :]  # (N, N)
            s = (q[b, :, sl] @ k[b, :, sl].T / math.sqrt(dh)).masked_fill(~keep, float("-inf"))  # (N, N)
            p = torch.softmax(s, -1).nan_to_num(0.0)  # rows with no allowed key -> 0
            out[b, :, sl] = p @ v[b, :, sl]
    return m.out(out)
