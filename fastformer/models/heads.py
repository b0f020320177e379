"""Pieces shared by every task model: token embedding, attention pooling (all tasks use it), classification head."""
from __future__ import annotations

import torch
from torch import nn

from fastformer.mixers.base import masked_softmax
from fastformer.ops import Dropout


def token_embedding(vocab_size: int, d_model: int, init: torch.Tensor | None = None) -> nn.Embedding:
    """Token embedding with N(0, 0.02) init (or ``init``, e.g. projected GloVe) and a zero padding row (id 0)."""
    embed = nn.Embedding(vocab_size, d_model, padding_idx=0)
    nn.init.normal_(embed.weight, 0.0, 0.02)
    if init is not None:
        if init.shape != embed.weight.shape:
            raise ValueError(f"embedding init has shape {tuple(init.shape)}, expected {tuple(embed.weight.shape)} "
                             "(vocab_size, d_model)")
        embed.weight.data.copy_(init)
    with torch.no_grad():
        embed.weight[0].zero_()
    return embed


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
        self.drop = Dropout(dropout)
        self.fc = nn.Linear(d_model, n_classes)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.fc(self.drop(self.pool(x, mask)))  # (B, C)
