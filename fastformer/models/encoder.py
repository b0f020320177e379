"""One encoder for every mixer: ``[pos-emb] -> [token shift] -> [input norm] -> n_layers x (mixer + FFN blocks)``.

Block (``norm_position="post"``, the BERT/official layout)::

    x = Norm(x + Dropout(Mixer(x, mask)))          # residual / norm switchable
    x = Norm(x + Dropout(FFN(x)))                  # FFN switchable; FFN = Linear, GELU, [Dropout], Linear

``norm_position="pre"`` uses ``x + Dropout(Mixer(Norm(x)))``. Layer-wise parameter sharing: with ``share_layers=True``
(or a mixer that sets ``share_across_layers``, Fastformer's ``sharing="qv+layer"``) one mixer instance is handed to
every layer; FFNs and norms stay per layer.

Token shift (``token_shift=True``, off by default; the recall probes turn it on): ``x_i <- x_i + W x_{i-1}`` once at the
input (``x_0`` gets zeros), one learned ``D x D`` map, the same for every mixer. It hands each token its left
neighbour's content, as the short convolutions of H3/Based do, so a probe can ask for a one-hop lookup between tokens
without each mixer first having to learn a previous-token circuit from absolute positions (a bidirectional softmax
encoder does not learn that on MQAR at CPU budgets: configs/data/probe_mqar.yaml). It mixes only adjacent tokens and
adds no token-to-token interaction beyond that, so a mixer that pools still cannot look one token up by another.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fastformer.mixers import MIXERS, TokenMixer, build_mixer, mixer_kwargs as mixer_kwargs_of
from fastformer.ops import Dropout


class FeedForward(nn.Module):
    """``Linear(D, d_ff) -> GELU -> [Dropout] -> Linear(d_ff, D)``. ``hidden_dropout=False`` is the released code's FFN
    (BertIntermediate = dense + GELU, no dropout before BertOutput's dense); this repo's runs so far used True."""

    def __init__(self, d_model: int, d_ff: int, dropout: float, hidden_dropout: bool = True):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d_model, d_ff), nn.GELU(),  # (Identity keeps the parameter names)
                                 Dropout(dropout) if hidden_dropout else nn.Identity(), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _norm(kind: str, d_model: int, eps: float) -> nn.Module:
    if kind == "layer":
        return nn.LayerNorm(d_model, eps=eps)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"encoder norm={kind!r} is not one of ['layer', 'none']")


class Block(nn.Module):
    def __init__(self, mixer: TokenMixer, d_model: int, *, use_ffn: bool, d_ff: int, dropout: float,
                 residual: bool, norm: str, norm_position: str, norm_eps: float, ffn_dropout: bool = True):
        super().__init__()
        if norm_position not in ("pre", "post"):
            raise ValueError(f"encoder norm_position={norm_position!r} is not one of ['pre', 'post']")
        self.mixer, self.residual, self.pre = mixer, residual, norm_position == "pre"
        self.norm1 = _norm(norm, d_model, norm_eps)
        self.ffn = FeedForward(d_model, d_ff, dropout, ffn_dropout) if use_ffn else None
        self.norm2 = _norm(norm, d_model, norm_eps) if use_ffn else None
        self.drop = Dropout(dropout)

    def _sub(self, x: torch.Tensor, fn, norm: nn.Module) -> torch.Tensor:
        y = self.drop(fn(norm(x) if self.pre else x))
        y = x + y if self.residual else y
        return y if self.pre else norm(y)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        x = self._sub(x, lambda z: self.mixer(z, mask), self.norm1)
        if self.ffn is not None:
            x = self._sub(x, self.ffn, self.norm2)
        return x


class Encoder(nn.Module):
    """``forward(x: (B, N, D) embeddings, mask: (B, N) bool | None) -> (B, N, D)``.

    Args:
        mixer: mixer name in the registry; ``mixer_kwargs`` its options.
        pos_emb: "learned" (absolute, ``max_len`` positions) | "none".
        input_norm: LayerNorm(+dropout) on the input embeddings (BERT/official layout).
        ffn_dropout: dropout on the FFN's hidden activation (the released code has none there; on by default, as every
            committed run was trained; off, the cpu preset's training step ran 1.04-1.12x faster).
        final_norm: LayerNorm at the end (useful with pre-norm).
    """

    def __init__(self, *, d_model: int = 256, n_heads: int = 16, n_layers: int = 2, mixer: str = "fastformer",
                 mixer_kwargs: Mapping[str, Any] | None = None, use_ffn: bool = True, d_ff: int = 256,
                 dropout: float = 0.2, residual: bool = True, norm: str = "layer", norm_position: str = "post",
                 norm_eps: float = 1e-12, pos_emb: str = "learned", max_len: int = 512, input_norm: bool = True,
                 final_norm: bool = False, share_layers: bool = False, token_shift: bool = False,
                 ffn_dropout: bool = True):
        super().__init__()
        if pos_emb not in ("learned", "none"):
            raise ValueError(f"encoder pos_emb={pos_emb!r} is not one of ['learned', 'none']")
        kw = dict(mixer_kwargs or {})
        if mixer in MIXERS and "max_len" in mixer_kwargs_of(mixer):  # e.g. Linformer sizes E/F to the max length
            kw.setdefault("max_len", max_len)
        first = build_mixer(mixer, d_model=d_model, n_heads=n_heads, **kw)
        self.shared = share_layers or first.share_across_layers
        mixers = [first] + [first if self.shared else build_mixer(mixer, d_model=d_model, n_heads=n_heads, **kw)
                            for _ in range(n_layers - 1)]
        self.max_len = max_len
        self.pos = nn.Embedding(max_len, d_model) if pos_emb == "learned" else None
        self.shift = nn.Linear(d_model, d_model) if token_shift else None
        self.in_norm = nn.LayerNorm(d_model, eps=norm_eps) if input_norm else nn.Identity()
        self.in_drop = Dropout(dropout)
        self.layers = nn.ModuleList(Block(m, d_model, use_ffn=use_ffn, d_ff=d_ff, dropout=dropout, residual=residual,
                                          norm=norm, norm_position=norm_position, norm_eps=norm_eps,
                                          ffn_dropout=ffn_dropout) for m in mixers)
        self.out_norm = nn.LayerNorm(d_model, eps=norm_eps) if final_norm else nn.Identity()
        for mod in self.modules():  # BERT init for the encoder's own layers (mixers init themselves)
            if isinstance(mod, nn.Embedding):
                nn.init.normal_(mod.weight, 0.0, 0.02)

    def stem(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Everything before the first block: positions, token shift, input norm -> the stream the first mixer reads."""
        B, N, _ = x.shape
        if N > self.max_len and self.pos is not None:
            raise ValueError(f"sequence length {N} exceeds the encoder's max_len={self.max_len}; "
                             "raise model.encoder.max_len or truncate the input")
        if self.pos is not None:
            x = x + self.pos(torch.arange(N, device=x.device))  # (B, N, D)
        if self.shift is not None:  # x_i += W x_{i-1}, with padded positions zeroed so no padding reaches a real token
            src = x if mask is None else x * mask[..., None].to(x.dtype)
            prev = torch.nn.functional.pad(src, (0, 0, 1, 0))[:, :-1]  # (B, N, D): x_{i-1}, zeros at i = 0
            x = x + self.shift(prev)
        return self.in_drop(self.in_norm(x))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stem(x, mask)
        for layer in self.layers:
            x = layer(x, mask)
        return self.out_norm(x)
