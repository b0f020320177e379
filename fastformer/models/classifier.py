"""Text classifier: token embedding -> Encoder(any mixer) -> attention pooling -> linear (paper §3, Table 8)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fastformer.models.encoder import Encoder
from fastformer.models.heads import ClassificationHead, token_embedding


class TextClassifier(nn.Module):
    """``forward(tokens: (B, N) long, mask: (B, N) bool) -> logits (B, C)``; padding id 0."""

    def __init__(self, *, vocab_size: int, n_classes: int, d_model: int, n_heads: int, max_len: int,
                 mixer: str, mixer_kwargs: Mapping[str, Any] | None = None, dropout: float = 0.2,
                 encoder: Mapping[str, Any] | None = None, embedding_init: torch.Tensor | None = None):
        super().__init__()
        self.embed = token_embedding(vocab_size, d_model, embedding_init)
        self.encoder = Encoder(d_model=d_model, n_heads=n_heads, max_len=max_len, mixer=mixer,
                               mixer_kwargs=mixer_kwargs, dropout=dropout, **dict(encoder or {}))
        self.head = ClassificationHead(d_model, n_classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.embed(tokens)  # (B, N, D)
        return self.head(self.encoder(x, mask), mask)  # (B, C)
