"""Encoder-decoder for abstractive summarisation: our ``Encoder`` (any mixer) + a standard Transformer decoder.

The paper gives only layer counts (encoder 4 CNN/DM / 2 PubMed, decoder 4) and beam size 5 (PAPER.md §3); the decoder
is not described. Choice made here, stated in the README: a standard Transformer decoder (Vaswani et al. 2017) in the
pre-LayerNorm arrangement (stable with Adam 1e-4 and no warm-up), each layer = causal self-attention -> cross-attention
to the encoder output -> FFN, all attention through ``F.scaled_dot_product_attention``. Encoder input, decoder input
and output projection share one embedding matrix (one subword vocabulary, see ``fastformer.data.subword``); token
embeddings are scaled by sqrt(D); the decoder has learned absolute positions.

Incremental decoding: ``init_state`` computes the cross-attention keys/values once; ``step`` feeds only the newest
token(s) and appends self-attention keys/values to a per-layer cache, so generating T tokens costs O(T) decoder
passes of length 1 instead of re-running the whole prefix. ``reorder_state`` permutes the cache for beam search.

Decoder self-attention is selectable (``decoder_mixer``, configs: ``model.decoder_mixer``): absent / None = the
softmax attention above; ``{"name": <mixer>, **options}`` = any mixer with a causal form (``causal_mixers()``, e.g.
Fastformer), built with ``causal=True``. Its incremental state (``TokenMixer.step``; Fastformer: a running
max / weighted sum / normaliser per head and pool, constant size) replaces the key/value cache, so beam search
decodes with it exactly as with the full pass (tests/test_causal_decoder.py). A mixer that shares its parameters
across layers (Fastformer ``sharing="qv+layer"``) is shared across the decoder layers too (each keeps its own state).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fastformer.mixers import TokenMixer, build_mixer, causal_mixers
from fastformer.models.encoder import Encoder, FeedForward
from fastformer.ops import Dropout

State = dict[str, Any]


class DecoderLayer(nn.Module):
    def __init__(self, d_model: int, n_heads: int, *, d_ff: int, dropout: float, attn_dropout: float,
                 self_mixer: TokenMixer | None = None):
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"decoder d_model={d_model} must be divisible by n_heads={n_heads}")
        self.h, self.dh, self.attn_dropout = n_heads, d_model // n_heads, attn_dropout
        self.self_mixer = self_mixer  # None: the softmax self-attention below (self_qkv / self_out)
        if self_mixer is None:
            self.self_qkv, self.self_out = nn.Linear(d_model, 3 * d_model), nn.Linear(d_model, d_model)
        self.cross_q, self.cross_kv = nn.Linear(d_model, d_model), nn.Linear(d_model, 2 * d_model)
        self.cross_out = nn.Linear(d_model, d_model)
        self.ffn = FeedForward(d_model, d_ff, dropout)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model) for _ in range(3))
        self.drop = Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, D) -> (B, h, T, dh)
        return x.view(x.shape[0], x.shape[1], self.h, self.dh).transpose(1, 2)

    def _merge(self, x: torch.Tensor) -> torch.Tensor:  # (B, h, T, dh) -> (B, T, D)
        return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.h * self.dh)

    def memory_kv(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k, v = self.cross_kv(memory).chunk(2, dim=-1)  # 2 x (B, N, D)
        return self._heads(k), self._heads(v)  # 2 x (B, h, N, dh)

    def forward(self, x: torch.Tensor, cross_k: torch.Tensor, cross_v: torch.Tensor, mem_bias: torch.Tensor | None,
                cache: dict[str, torch.Tensor] | None) -> torch.Tensor:
        """x: (B, t, D) new positions; cache: this layer's past self-attention k/v (updated in place) or None."""
        p = self.attn_dropout if self.training else 0.0
        if self.self_mixer is not None:  # a causal mixer: full pass, or one step with this layer's state
            if cache is None:
                y = self.self_mixer(self.norm1(x), None)
            else:
                y, cache["state"] = self.self_mixer.step(self.norm1(x), cache.get("state"))
            return self._cross_ffn(x + self.drop(y), cross_k, cross_v, mem_bias, p)
        q, k, v = (self._heads(z) for z in self.self_qkv(self.norm1(x)).chunk(3, dim=-1))  # 3 x (B, h, t, dh)
        past = 0
        if cache is not None:
            if "k" in cache:
                past = cache["k"].shape[2]
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)  # (B, h, past+t, dh)
            cache["k"], cache["v"] = k, v
        t = q.shape[2]
        if past == 0:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=t > 1, dropout_p=p)  # (B, h, t, dh)
        else:  # query i (absolute position past+i) sees keys 0..past+i
            q_pos = past + torch.arange(t, device=x.device)
            allowed = torch.arange(past + t, device=x.device)[None, :] <= q_pos[:, None]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=p)  # (B, h, t, dh)
        x = x + self.drop(self.self_out(self._merge(y)))
        return self._cross_ffn(x, cross_k, cross_v, mem_bias, p)

    def _cross_ffn(self, x: torch.Tensor, cross_k: torch.Tensor, cross_v: torch.Tensor,
                   mem_bias: torch.Tensor | None, p: float) -> torch.Tensor:
        q = self._heads(self.cross_q(self.norm2(x)))  # (B, h, t, dh)
        y = F.scaled_dot_product_attention(q, cross_k, cross_v, attn_mask=mem_bias, dropout_p=p)  # (B, h, t, dh)
        x = x + self.drop(self.cross_out(self._merge(y)))
        return x + self.drop(self.ffn(self.norm3(x)))


class Seq2Seq(nn.Module):
    """``forward(src (B, N) ids, src_mask (B, N) bool, tgt_in (B, T) ids) -> logits (B, T, V)`` (teacher forcing).

    Args:
        encoder: keyword arguments of ``fastformer.models.Encoder`` (``mixer``, ``mixer_kwargs``, ``n_layers``,
            ``max_len`` = source length, ...); ``d_model``/``n_heads``/``dropout`` are taken from here.
        dec_layers, dec_d_ff: decoder depth and FFN width. ``max_tgt_len``: decoder positions.
        decoder_mixer: None (softmax self-attention) or ``{"name": mixer, **options}``, a mixer with a causal form.
    """

    def __init__(self, *, vocab_size: int, d_model: int = 256, n_heads: int = 16,
                 encoder: Mapping[str, Any] | None = None, dec_layers: int = 4, dec_d_ff: int = 1024,
                 dropout: float = 0.2, attn_dropout: float = 0.0, max_tgt_len: int = 256, pad_id: int = 0,
                 tie_embeddings: bool = True, decoder_mixer: Mapping[str, Any] | None = None):
        super().__init__()
        enc_kw = dict(encoder or {})
        clash = sorted({"d_model", "n_heads", "dropout"} & set(enc_kw))
        if clash:
            raise ValueError(f"set {clash} on the Seq2Seq model, not inside its encoder options")
        self.d_model, self.pad_id, self.max_tgt_len = d_model, pad_id, max_tgt_len
        self.embed = nn.Embedding(vocab_size, d_model, padding_idx=pad_id)
        self.encoder = Encoder(d_model=d_model, n_heads=n_heads, dropout=dropout, **enc_kw)
        self.dec_pos = nn.Embedding(max_tgt_len, d_model)
        self.dec_drop = Dropout(dropout)
        mixers = self._decoder_mixers(decoder_mixer, d_model, n_heads, dec_layers)
        self.layers = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff=dec_d_ff, dropout=dropout,
                                                 attn_dropout=attn_dropout, self_mixer=mx) for mx in mixers)
        self.final_norm = nn.LayerNorm(d_model)
        self.lm_head = None if tie_embeddings else nn.Linear(d_model, vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, 0.0, d_model ** -0.5)  # unit variance after the sqrt(D) scale
        nn.init.normal_(self.dec_pos.weight, 0.0, 0.02)
        with torch.no_grad():
            self.embed.weight[pad_id].zero_()

    @staticmethod
    def _decoder_mixers(spec: Mapping[str, Any] | None, d_model: int, n_heads: int,
                        n: int) -> list[TokenMixer | None]:
        """One causal self-attention mixer per decoder layer (one shared instance if the mixer says so), or Nones."""
        if not spec:
            return [None] * n
        kw = dict(spec)
        name = kw.pop("name", None)
        if name not in causal_mixers():
            raise ValueError(f"decoder_mixer name={name!r} is not a mixer with a causal form; "
                             f"choose one of {causal_mixers()}")
        first = build_mixer(name, d_model=d_model, n_heads=n_heads, **{**kw, "causal": True})
        if first.share_across_layers:
            return [first] * n
        return [first] + [build_mixer(name, d_model=d_model, n_heads=n_heads, **{**kw, "causal": True})
                          for _ in range(n - 1)]

    def _tok(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids) * math.sqrt(self.d_model)  # (B, T, D)

    def encode(self, src: torch.Tensor, src_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(self._tok(src), src_mask)  # (B, N, D)

    def init_state(self, memory: torch.Tensor, src_mask: torch.Tensor) -> State:
        """Decoder state for incremental decoding: cross-attention k/v per layer, empty self-attention caches."""
        kv = [layer.memory_kv(memory) for layer in self.layers]
        return {"pos": 0, "mem_bias": src_mask[:, None, None, :],  # (B, 1, 1, N) True = attend
                "cross": kv, "cache": [{} for _ in self.layers]}

    def decode(self, tgt: torch.Tensor, state: State, *, incremental: bool) -> torch.Tensor:
        """tgt: (B, t) new tokens at positions state["pos"]... -> logits (B, t, V); advances the state if
        incremental."""
        t = tgt.shape[1]
        start = state["pos"] if incremental else 0
        if start + t > self.max_tgt_len:
            raise ValueError(f"target length {start + t} exceeds model.max_tgt_len={self.max_tgt_len}")
        x = self._tok(tgt) + self.dec_pos(torch.arange(start, start + t, device=tgt.device))  # (B, t, D)
        x = self.dec_drop(x)
        for layer, (ck, cv), cache in zip(self.layers, state["cross"], state["cache"]):
            x = layer(x, ck, cv, state["mem_bias"], cache if incremental else None)
        if incremental:
            state["pos"] = start + t
        x = self.final_norm(x)
        return F.linear(x, self.embed.weight) if self.lm_head is None else self.lm_head(x)  # (B, t, V)

    def step(self, tokens: torch.Tensor, state: State) -> torch.Tensor:
        """Incremental step: tokens (B, 1) -> next-token logits (B, V)."""
        return self.decode(tokens, state, incremental=True)[:, -1]

    @staticmethod
    def reorder_state(state: State, index: torch.Tensor) -> State:
        """Select/permute rows (beam search): every cached tensor (in nested dicts / tuples / lists: a mixer's
        state) is indexed along its batch dimension."""
        def sel(z: Any) -> Any:
            if torch.is_tensor(z):
                return z.index_select(0, index)
            if isinstance(z, dict):
                return {n: sel(v) for n, v in z.items()}
            if isinstance(z, (tuple, list)):
                return type(z)(sel(v) for v in z)
            return z
        return {"pos": state["pos"], "mem_bias": sel(state["mem_bias"]), "cross": sel(state["cross"]),
                "cache": sel(state["cache"])}

    def forward(self, src: torch.Tensor, src_mask: torch.Tensor, tgt_in: torch.Tensor) -> torch.Tensor:
        state = self.init_state(self.encode(src, src_mask), src_mask)
        return self.decode(tgt_in, state, incremental=False)  # (B, T, V)
