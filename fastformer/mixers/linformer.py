"""Linformer (Wang et al. 2020, "Self-Attention with Linear Complexity", arXiv 2006.04768).

Keys and values are projected along the sequence axis by learned E, F in R^{k x max_len} (k = ``proj_len``)::

    head_i = softmax(Q_i (E_i K_i)^T / sqrt(dh)) (F_i V_i)          (B, N, k) attention, O(N k dh)

For a sequence of length N <= max_len the first N columns of E/F are used (E[:, :N]); padded tokens' keys and values
are zeroed before the projection, so they contribute nothing. Sharing (paper Sec. 4, "parameter sharing"):
``share_heads`` = headwise sharing (one E, F per layer for all heads), ``share_kv`` = key-value sharing (E = F).
The paper's best Table 2 row uses key-value + layerwise sharing; the default here is key-value sharing per layer
(``share_heads=True, share_kv=True``): one (k, max_len) matrix per layer. Layerwise sharing (one E for all layers)
is the encoder's job (``share_layers=True`` shares the whole mixer, not just E).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from fastformer.mixers.base import TokenMixer, masked_softmax, register_mixer
from fastformer.ops import Dropout


@register_mixer("linformer")
class Linformer(TokenMixer):
    """Low-rank (sequence-projected) softmax attention. Options (keyword-only):

    proj_len     k, the projected length of keys/values (paper Table 8 of Fastformer: 16; 64 for summarization)
    max_len      longest supported sequence (E/F have max_len columns); the encoder passes its own max_len
    share_kv     E = F (key-value sharing)
    share_heads  one E (and F) for all heads (headwise sharing); False: one per head
    dropout      dropout on the (N, k) attention probabilities
    bias         bias in the q/k/v/out projections
    """

    def __init__(self, d_model: int, n_heads: int, *, proj_len: int = 16, max_len: int | None = None,
                 share_kv: bool = True, share_heads: bool = True, dropout: float = 0.0, bias: bool = True):
        super().__init__(d_model, n_heads)
        if max_len is None or max_len < 1:
            raise ValueError(f"linformer needs max_len >= 1 (got {max_len}); set model.mixer.max_len or let the "
                             "encoder pass its max_len")
        if proj_len < 1:
            raise ValueError(f"linformer proj_len={proj_len} must be >= 1")
        self.proj_len, self.max_len, self.share_kv, self.share_heads = proj_len, max_len, share_kv, share_heads
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.attn_drop = Dropout(dropout)
        n_mat = 1 if share_heads else n_heads
        # fairseq's Linformer init: xavier_uniform with gain 1/sqrt(2) on the (k, max_len) compression matrix
        bound = math.sqrt(6.0 / (proj_len + max_len)) / math.sqrt(2.0)
        self.E = nn.Parameter(torch.empty(n_mat, proj_len, max_len).uniform_(-bound, bound))  # (h|1, k, max_len)
        self.F = None if share_kv else nn.Parameter(torch.empty(n_mat, proj_len, max_len).uniform_(-bound, bound))

    def projections(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """E, F sliced to the first ``n`` positions: 2 x (h or 1, k, n)."""
        if n > self.max_len:
            raise ValueError(f"linformer: sequence length {n} exceeds max_len={self.max_len}; raise the mixer's "
                             "max_len (model max_len) or truncate the input")
        E = self.E[:, :, :n]
        return E, (E if self.F is None else self.F[:, :, :n])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        E, F = self.projections(N)  # (h|1, k, N)
        q, k, v = self.qkv(x).view(B, N, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, dh)
        if mask is not None:
            keep = mask[:, None, :, None].to(k.dtype)  # (B, 1, N, 1)
            k, v = k * keep, v * keep  # padded tokens zeroed before the projection
        kp = torch.einsum("hkn,bhnd->bhkd", E.to(k.dtype), k)  # (B, h, k, dh)
        vp = torch.einsum("hkn,bhnd->bhkd", F.to(v.dtype), v)  # (B, h, k, dh)
        scores = q @ kp.transpose(-1, -2) / math.sqrt(self.d_head)  # (B, h, N, k)
        p = self.attn_drop(masked_softmax(scores, None))  # (B, h, N, k)
        y = p @ vp  # (B, h, N, dh)
        return self.out(y.transpose(1, 2).reshape(B, N, D))
