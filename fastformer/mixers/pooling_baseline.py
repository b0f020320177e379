"""Pooling baseline: attention pooling of the sequence, broadcast back and gating every token -- no token pairs.

The review of Fastformer (PAPER.md §5) argues that with query = value the layer computes, per token,
``out_i = (W_t diag(k*) + I) q_i``: a per-token linear map conditioned on one pooled vector per head. This mixer is
the plain, textbook version of that computation, written without any query-key machinery, so the probes and the
redundancy ablation can ask whether Fastformer does anything a pooled-context layer does not. Per head, ``dh = D / h``::

    v_i   = (W_v x_i + b_v)_head                          value of token i                       (B, N, h, dh)
    a_i   = softmax_i(w . v_i / sqrt(dh))                 pooling weights from a static learned w (B, N, h)
    g     = sum_i a_i v_i                                 one pooled context vector per head      (B, h, dh)
    s     = sigmoid(g)        (gate="sigmoid")            gate, the same for every token
          = g                 (gate="product")            (Fastformer-style raw element-wise product)
          = 1                 (gate="none")
    u_i   = s (.) v_i  + g    (the "+ g" broadcast term only with broadcast=True)
    out_i = W_o u_i + b_o + v_i                           full D x D output map, residual from v

Token ``i`` sees the rest of the sequence only through ``g`` -- token mixing is rank one per head, exactly the
structure the review attributes to Fastformer. Differences from ``fastformer(key_branch=False)``: a bounded sigmoid
gate, the additive broadcast of ``g`` (a global-context term Fastformer lacks), and one full ``W_o`` instead of
per-head output maps; like Fastformer's final model it shares one projection between pooling and values (no separate
query). Padded positions get zero pooling weight, so real outputs never depend on them.

``causal=True``: ``g`` becomes a prefix pool, ``g_i = sum_{j <= i} softmax_j(w . v_j) v_j`` (``prefix_softmax_pool``,
running max, O(N d)), and token i is gated by ``g_i``; ``step`` carries the pool's state.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from fastformer.mixers.base import TokenMixer, masked_softmax, prefix_softmax_pool, register_mixer
from fastformer.ops import Dropout

GATES = ("sigmoid", "product", "none")


@register_mixer("pooling_baseline")
class PoolingBaseline(TokenMixer):
    """Pool-broadcast-gate mixer. Options (keyword-only):

    gate       "sigmoid" (default) | "product" | "none" -- how the pooled vector g modulates each token's value
    broadcast  add g to every token's value before the output map (default True)
    dropout    dropout on the pooled vector g
    causal     token i pools positions j <= i only
    """

    def __init__(self, d_model: int, n_heads: int, *, gate: str = "sigmoid", broadcast: bool = True,
                 dropout: float = 0.0, max_len: int | None = None, causal: bool = False):
        super().__init__(d_model, n_heads)
        self.causal = bool(causal)
        if gate not in GATES:
            raise ValueError(f"pooling_baseline option gate={gate!r} is not one of {list(GATES)}")
        if gate == "none" and not broadcast:
            raise ValueError("pooling_baseline with gate='none' and broadcast=False mixes no tokens at all; "
                             "set gate='sigmoid'|'product' or broadcast=True")
        self.gate, self.broadcast = gate, broadcast
        self.scale = 1.0 / math.sqrt(self.d_head)
        self.value = nn.Linear(d_model, d_model)
        self.w = nn.Parameter(torch.empty(n_heads, self.d_head).normal_(0.0, 0.02))  # per-head pooling query
        self.out = nn.Linear(d_model, d_model)
        self.dropout = Dropout(dropout)
        for lin in (self.value, self.out):  # same init as the Fastformer mixer: N(0, 0.02), zero bias
            nn.init.normal_(lin.weight, 0.0, 0.02)
            nn.init.zeros_(lin.bias)

    def pooled(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, N, D) -> (values (B, N, h, dh), pooled context g (B, h, dh))."""
        B, N, _ = x.shape
        v = self.value(x).view(B, N, self.n_heads, self.d_head)  # (B, N, h, dh)
        scores = (v * self.w).sum(-1) * self.scale  # (B, N, h)
        a = masked_softmax(scores, None if mask is None else mask[:, :, None], dim=1)  # (B, N, h)
        return v, torch.einsum("bnh,bnhd->bhd", a, v)  # (B, h, dh)

    def _causal(self, x: torch.Tensor, mask: torch.Tensor | None,
                state: dict | None) -> tuple[torch.Tensor, dict]:
        B, N, _ = x.shape
        v = self.value(x).view(B, N, self.n_heads, self.d_head)  # (B, N, h, dh)
        g, st = prefix_softmax_pool((v * self.w).sum(-1) * self.scale, v, mask, (state or {}).get("g"))
        return self._mix(v, self.dropout(g)), {"g": st}

    def step(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        if not self.causal:
            return super().step(x, state)
        return self._causal(x, None, state)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.causal:
            return self._causal(x, mask, None)[0]
        v, g = self.pooled(x, mask)
        return self._mix(v, self.dropout(g)[:, None])  # g: (B, 1, h, dh), broadcast over tokens

    def _mix(self, v: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """values (B, N, h, dh) gated by / broadcast with the pooled g (B, 1 | N, h, dh) -> (B, N, D)."""
        B, N, _, _ = v.shape
        D = self.d_model
        if self.gate == "sigmoid":
            u = torch.sigmoid(g) * v
        elif self.gate == "product":
            u = g * v
        else:
            u = v
        if self.broadcast:
            u = u + g  # (B, N, h, dh)
        return self.out(u.reshape(B, N, D)) + v.reshape(B, N, D)
