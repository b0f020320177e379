"""Softmax multi-head self-attention (Vaswani et al. 2017) through ``F.scaled_dot_product_attention``.

On GPU PyTorch dispatches to FlashAttention / memory-efficient kernels; on CPU to its fused flash-style kernel.
``causal=True``: query i attends real keys j <= i (the decoder's masked self-attention); ``step`` keeps a key/value
cache.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastformer.mixers.base import TokenMixer, register_mixer


@register_mixer("transformer")
class Transformer(TokenMixer):
    """Full softmax attention, O(N^2 d). Options: ``dropout`` (attention-probability dropout), ``bias``, ``causal``."""

    def __init__(self, d_model: int, n_heads: int, *, dropout: float = 0.0, bias: bool = True,
                 max_len: int | None = None, causal: bool = False):
        super().__init__(d_model, n_heads)
        self.causal = bool(causal)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.attn_dropout = dropout

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, _ = x.shape
        return self.qkv(x).view(B, N, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, dh)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self._qkv(x)
        p = self.attn_dropout if self.training else 0.0
        if self.causal and mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            attn_mask = None if mask is None else mask[:, None, None, :]  # (B, 1, 1, N): True = attend
            if self.causal:  # real keys j <= i; a padded query also sees itself, so no row is empty
                eye = torch.eye(N, dtype=torch.bool, device=x.device)
                attn_mask = torch.ones(N, N, dtype=torch.bool, device=x.device).tril() & (attn_mask | eye)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=p)  # (B, h, N, dh)
        return self.out(y.transpose(1, 2).reshape(B, N, D))

    def step(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Causal incremental step with a key/value cache: state ``{"k", "v"}`` (B, h, past, dh)."""
        if not self.causal:
            return super().step(x, state)
        B, t, D = x.shape
        q, k, v = self._qkv(x)
        past = 0
        if state:
            past = state["k"].shape[2]
            k, v = torch.cat([state["k"], k], dim=2), torch.cat([state["v"], v], dim=2)  # (B, h, past + t, dh)
        allowed = torch.arange(past + t, device=x.device)[None, :] <= past + torch.arange(t, device=x.device)[:, None]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                           dropout_p=self.attn_dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, t, D)), {"k": k, "v": v}
