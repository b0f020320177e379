"""Poolingformer two-level attention (Zhang et al., ICML 2021, arXiv 2105.04371), O(N (w1 + w2 / p) d).

Per head, for a row with real-token mask ``m`` (windows are total spans, as for ``longformer``)::

    level 1  y_i = sum_{j real, |i-j| <= window/2} softmax_j(q_i . k_j / sqrt(dh)) v_j        q, k, v = qkv(x)
    level 2  q2, k2, v2 = qkv_pool(y)                  (the second level is built on the first level's output)
             K_b, V_b   = pool(k2, v2 over the real tokens of bucket b = positions [b p, b p + p))     (B, N/p, D)
             z_i = sum_{b non-empty, |c_b - i| <= pool_window/2} softmax_b(q2_i . K_b / sqrt(dh)) V_b
             with c_b = b p + (p - 1) / 2 the bucket centre
    output   out(y + z)                                (residual between the two levels, then output projection)

Pooling is ``pool="mean"`` (default) or ``"max"`` with kernel = stride = ``pool_size``, buckets aligned to position 0
(computed once, not per query window); a bucket holding no real token is masked out. The paper's best pooling
(lightweight dynamic convolution) and its kernel/stride values are not reproduced -- see the configs' notes.

Reading of the Fastformer paper's Table 8 "Window (Poolingformer)" (64 / 256): the **first-level** window; the
second-level window is 4x it, the 128 : 512 ratio Poolingformer used. Figure 2's cost ratio supports this reading:
at the MIND setting Poolingformer is ~16x slower than Longformer (window 16), i.e. ~256 / 16.

Fast path: both levels use ``longformer.chunked_band_attention`` (query chunks, rolled key windows, one fused SDPA).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastformer.mixers.base import TokenMixer, register_mixer
from fastformer.mixers.longformer import chunked_band_attention, default_chunk


def pool_buckets(t: torch.Tensor, real: torch.Tensor, size: int, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    """t: (B, N, D), real: (B, N) bool -> pooled (B, M, D) over the real tokens of each bucket, valid (B, M) bool."""
    B, N, D = t.shape
    M = -(-N // size)
    realp = F.pad(real, (0, M * size - N), value=False).view(B, M, size)  # (B, M, p)
    tp = F.pad(t, (0, 0, 0, M * size - N)).view(B, M, size, D)  # (B, M, p, D)
    count = realp.sum(-1)  # (B, M)
    valid = count > 0
    if kind == "mean":
        pooled = (tp * realp[..., None]).sum(2) / count.clamp(min=1)[..., None].to(t.dtype)  # (B, M, D)
    else:  # max over real tokens; empty buckets -> 0 (they are masked out anyway)
        pooled = tp.masked_fill(~realp[..., None], float("-inf")).amax(2)  # (B, M, D)
        pooled = torch.where(valid[..., None], pooled, torch.zeros_like(pooled))
    return pooled, valid


def pooled_key_range(chunk: int, pool_size: int, pool_window: int) -> tuple[int, int]:
    """(key_left, key_len) in buckets for a query chunk: buckets b with |2 b p + p - 1 - 2 i| <= pool_window for some
    query i of chunk c are c*chunk/p - key_left + [0, key_len)."""
    p = pool_size
    lo = -((pool_window + p - 1) // (2 * p))  # ceil((-pool_window - p + 1) / 2p)
    hi = (2 * chunk - 2 + pool_window - p + 1) // (2 * p)
    return -lo, hi - lo + 1


@register_mixer("poolingformer")
class Poolingformer(TokenMixer):
    """Sliding-window attention followed by pooled-key attention over a larger window. Options (keyword-only):

    window       first-level total span (even): each token sees ±window/2 neighbours (Table 8 "Window (Poolingformer)")
    pool_window  second-level total span (even, >= pool_size): buckets whose centre is within ±pool_window/2
    pool_size    pooling kernel = stride p (keys/values of p consecutive tokens pooled into one)
    pool         "mean" | "max" pooling of the second-level keys/values (padding excluded)
    dropout      attention-probability dropout (both levels)
    chunk        query chunk size of both levels (None: automatic, multiples of pool_size); speed only, not results
    max_len      accepted for the encoder contract, unused (any length works)
    """

    def __init__(self, d_model: int, n_heads: int, *, window: int = 64, pool_window: int = 256, pool_size: int = 4,
                 pool: str = "mean", dropout: float = 0.0, chunk: int | None = None, max_len: int | None = None):
        super().__init__(d_model, n_heads)
        for name, val in (("window", window), ("pool_window", pool_window)):
            if val < 2 or val % 2:
                raise ValueError(f"poolingformer option {name}={val} must be an even total span >= 2")
        if pool_size < 1 or pool_window < pool_size:
            raise ValueError(f"poolingformer option pool_size={pool_size} must be in [1, pool_window={pool_window}]")
        if pool not in ("mean", "max"):
            raise ValueError(f"poolingformer option pool={pool!r} is not one of ['mean', 'max']")
        if chunk is not None and (chunk < 1 or chunk % pool_size):
            raise ValueError(f"poolingformer option chunk={chunk} must be a positive multiple of pool_size={pool_size}")
        self.window, self.one_sided = window, window // 2
        self.pool_window, self.pool_size, self.pool = pool_window, pool_size, pool
        self.attn_dropout = dropout
        up = lambda n: -(-n // pool_size) * pool_size  # noqa: E731  (multiple of pool_size: buckets align with chunks)
        self.chunk = chunk or up(default_chunk(self.one_sided))  # first level
        self.chunk2 = chunk or up(max(self.chunk, pool_window // 4))  # second level: fewer, larger key pieces
        self.qkv = nn.Linear(d_model, 3 * d_model)  # first level
        self.qkv_pool = nn.Linear(d_model, 3 * d_model)  # second level, applied to the first level's output
        self.out = nn.Linear(d_model, d_model)

    def _heads(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (B, M, 3D) -> 3 x (B, M, h, dh)
        return t.view(t.shape[0], t.shape[1], 3, self.n_heads, self.d_head).unbind(2)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        real = torch.ones(B, N, dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        drop = self.attn_dropout if self.training else 0.0
        C, w, p, pw = self.chunk, self.one_sided, self.pool_size, self.pool_window
        q, k, v = self._heads(self.qkv(x))  # (B, N, h, dh)
        y = chunked_band_attention(q, k, v, real, chunk=C, key_step=C, key_left=w, key_len=C + 2 * w,
                                   allow=lambda qp, kp: (qp - kp).abs() <= w, dropout=drop).reshape(B, N, D)
        q2, k2, v2 = self.qkv_pool(y).split(D, dim=-1)  # (B, N, D) each
        kb, valid = pool_buckets(k2, real, p, self.pool)  # (B, M, D), (B, M)
        vb, _ = pool_buckets(v2, real, p, self.pool)  # (B, M, D)
        M = kb.shape[1]
        C2 = self.chunk2
        left, length = pooled_key_range(C2, p, pw)
        z = chunked_band_attention(q2.view(B, N, self.n_heads, self.d_head), kb.view(B, M, self.n_heads, self.d_head),
                                   vb.view(B, M, self.n_heads, self.d_head), valid, chunk=C2, key_step=C2 // p,
                                   key_left=left, key_len=length,
                                   allow=lambda qp, kb_: (2 * kb_ * p + p - 1 - 2 * qp).abs() <= pw,
                                   dropout=drop).reshape(B, N, D)  # (B, N, D)
        return self.out(y + z)

    def extra_repr(self) -> str:
        return (f"window={self.window} (±{self.one_sided}), pool_window={self.pool_window}, "
                f"pool_size={self.pool_size}, pool={self.pool!r}, chunk={self.chunk}/{self.chunk2}")
