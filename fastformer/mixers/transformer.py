"""Softmax multi-head self-attention (Vaswani et al. 2017) through ``F.scaled_dot_product_attention``.

On GPU PyTorch dispatches to FlashAttention / memory-efficient kernels; on CPU to its fused flash-style kernel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastformer.mixers.base import TokenMixer, register_mixer


@register_mixer("transformer")
class Transformer(TokenMixer):
    """Full softmax attention, O(N^2 d). Options: ``dropout`` (attention-probability dropout), ``bias``."""

    def __init__(self, d_model: int, n_heads: int, *, dropout: float = 0.0, bias: bool = True,
                 max_len: int | None = None):
        super().__init__(d_model, n_heads)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.attn_dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, dh)
        attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N): True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                           dropout_p=self.attn_dropout if self.training else 0.0)  # (B, h, N, dh)
        return self.out(y.transpose(1, 2).reshape(B, N, D))
