"""Task heads shared by every task: attention pooling (all tasks use it) and the classification head."""
from __future__ import annotations

import torch
from torch import nn

from fastformer.mixers.base import masked_softmax


class AttentionPooling(nn.Module):
    """Additive attention pooling ``alpha_i = softmax_i(w . tanh(W x_i + b))``, masked and max-subtracted.

    ``forward(x: (B, N, D), mask: (B, N) bool | None) -> (B, D)``. (The official code's version exponentiates without
    max subtraction and can overflow; this one cannot.)
    """

    def __init__(self, d_model: int, d_hidden: int | None = None):
        super().__init__()
        self.proj = nn.Linear(d_model, d_hidden or d_model)
        self.score = nn.Linear(d_hidden or d_model, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        scores = self.score(torch.tanh(self.proj(x))).squeeze(-1)  # (B, N)
        alpha = masked_softmax(scores, mask, dim=-1)  # (B, N)
        return torch.einsum("bn,bnd->bd", alpha, x)


class ClassificationHead(nn.Module):
    """Attention pooling -> dropout -> linear over ``n_classes``."""

    def __init__(self, d_model: int, n_classes: int, dropout: float = 0.0):
        super().__init__()
        self.pool = AttentionPooling(d_model)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.drop(self.pool(x, mask)))  # (B, C)
