"""Hierarchical news recommender (NRMS layout, as the paper uses Fastformer for MIND; PAPER.md §3).

* news encoder: title tokens -> embedding -> ``Encoder`` (one mixer layer; no LayerNorm, no position embedding by
  default, per the official README) -> attention pooling -> news vector. ``news_encoder="hf"`` replaces it by a
  pretrained LM from a local Hugging Face checkpoint (PLM-NR) followed by attention pooling (+ a linear map to
  ``d_model`` when the widths differ).
* user encoder: the clicked-news vectors -> ``Encoder`` (one mixer layer) -> attention pooling -> user vector.
* click score: dot product of user and candidate vectors.

``forward`` takes a batch whose titles are de-duplicated: ``news_tokens (U, L)`` holds each distinct title once and
``hist_idx (B, H)`` / ``cand_idx (B, C)`` index into it, so a title shared by several users is encoded once.
Rows with no real token / users with no history attend to position 0 (the padding title) so outputs stay finite.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from fastformer.models.encoder import Encoder
from fastformer.models.heads import AttentionPooling, token_embedding
from fastformer.ops import Dropout

#: block switches of both encoders (NRMS: one self-attention layer, no FFN / residual / LayerNorm / positions)
NEWSREC_ENCODER_DEFAULTS = dict(n_layers=1, use_ffn=False, d_ff=256, residual=False, norm="none",
                                norm_position="post", pos_emb="none", input_norm=False, final_norm=False)


def _ensure_one_real(mask: torch.Tensor) -> torch.Tensor:
    """(B, N) bool -> same, with position 0 marked real in rows that have no real position."""
    empty = ~mask.any(dim=1)  # (B,)
    if not bool(empty.any()):
        return mask
    mask = mask.clone()
    mask[:, 0] |= empty
    return mask


class MixerNewsEncoder(nn.Module):
    """``forward(tokens (M, L) long, mask (M, L) bool) -> (M, D)``: embedding -> Encoder(mixer) -> attention pooling."""

    def __init__(self, *, vocab_size: int, d_model: int, n_heads: int, max_len: int, mixer: str,
                 mixer_kwargs: Mapping[str, Any] | None, dropout: float, encoder: Mapping[str, Any],
                 embedding_init: torch.Tensor | None = None):
        super().__init__()
        self.embed = token_embedding(vocab_size, d_model, embedding_init)
        self.encoder = Encoder(d_model=d_model, n_heads=n_heads, max_len=max_len, mixer=mixer,
                               mixer_kwargs=mixer_kwargs, dropout=dropout, **encoder)
        self.pool = AttentionPooling(d_model)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = _ensure_one_real(mask)
        h = self.encoder(self.embed(tokens), mask)  # (M, L, D)
        return self.pool(h, mask)  # (M, D)


class HFNewsEncoder(nn.Module):
    """Pretrained LM news encoder (PLM-NR): ``AutoModel`` at a local path -> attention pooling -> linear to d_model."""

    def __init__(self, *, path: str, d_model: int, dropout: float):
        super().__init__()
        from transformers import AutoModel
        try:
            self.lm = AutoModel.from_pretrained(path)
        except (OSError, ValueError) as e:
            raise FileNotFoundError(f"model.hf_path={path!r} is not a loadable local Hugging Face checkpoint "
                                    f"(config.json + weights); point it at one ({type(e).__name__})") from e
        hidden = int(self.lm.config.hidden_size)
        self.pool = AttentionPooling(hidden)
        self.drop = Dropout(dropout)
        self.proj = nn.Linear(hidden, d_model) if hidden != d_model else nn.Identity()

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = _ensure_one_real(mask)
        h = self.lm(input_ids=tokens, attention_mask=mask.long()).last_hidden_state  # (M, L, H)
        return self.proj(self.drop(self.pool(h, mask)))  # (M, D)


class UserEncoder(nn.Module):
    """``forward(news_vecs (B, H, D), mask (B, H) bool) -> (B, D)``: Encoder(mixer) over clicks -> attention pooling."""

    def __init__(self, *, d_model: int, n_heads: int, max_history: int, mixer: str,
                 mixer_kwargs: Mapping[str, Any] | None, dropout: float, encoder: Mapping[str, Any]):
        super().__init__()
        self.encoder = Encoder(d_model=d_model, n_heads=n_heads, max_len=max_history, mixer=mixer,
                               mixer_kwargs=mixer_kwargs, dropout=dropout, **encoder)
        self.pool = AttentionPooling(d_model)

    def forward(self, news_vecs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = _ensure_one_real(mask)
        return self.pool(self.encoder(news_vecs, mask), mask)  # (B, D)


class NewsRecModel(nn.Module):
    """News encoder + user encoder + dot-product click scores (see module docstring).

    Args:
        mixer / mixer_kwargs: the registry mixer of the user encoder and (with ``news_encoder="mixer"``) the news
            encoder; ``user_mixer`` / ``user_mixer_kwargs`` override it for the user encoder only.
        encoder: block switches for both encoders (``NEWSREC_ENCODER_DEFAULTS`` filled in for missing keys).
        news_encoder: "mixer" | "hf" (``hf_path``: local checkpoint directory; tokens must come from its tokenizer).
    """

    def __init__(self, *, vocab_size: int, d_model: int = 256, n_heads: int = 16, mixer: str = "fastformer",
                 mixer_kwargs: Mapping[str, Any] | None = None, user_mixer: str | None = None,
                 user_mixer_kwargs: Mapping[str, Any] | None = None, dropout: float = 0.2, max_title_len: int = 48,
                 max_history: int = 50, encoder: Mapping[str, Any] | None = None, news_encoder: str = "mixer",
                 hf_path: str | None = None, embedding_init: torch.Tensor | None = None):
        super().__init__()
        enc = {**NEWSREC_ENCODER_DEFAULTS, **dict(encoder or {})}
        if news_encoder == "mixer":
            self.news_encoder: nn.Module = MixerNewsEncoder(
                vocab_size=vocab_size, d_model=d_model, n_heads=n_heads, max_len=max_title_len, mixer=mixer,
                mixer_kwargs=mixer_kwargs, dropout=dropout, encoder=enc, embedding_init=embedding_init)
        elif news_encoder == "hf":
            if not hf_path:
                raise ValueError("model.news_encoder=hf needs model.hf_path (a local Hugging Face checkpoint dir)")
            self.news_encoder = HFNewsEncoder(path=hf_path, d_model=d_model, dropout=dropout)
        else:
            raise ValueError(f"model.news_encoder={news_encoder!r} is not one of ['mixer', 'hf']")
        self.user_encoder = UserEncoder(
            d_model=d_model, n_heads=n_heads, max_history=max_history, mixer=user_mixer or mixer,
            mixer_kwargs=user_mixer_kwargs if user_mixer is not None else mixer_kwargs, dropout=dropout, encoder=enc)

    def encode_news(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(M, L) tokens, (M, L) mask -> (M, D) news vectors."""
        return self.news_encoder(tokens, mask)

    def encode_user(self, hist_vecs: torch.Tensor, hist_mask: torch.Tensor) -> torch.Tensor:
        """(B, H, D) clicked-news vectors, (B, H) mask -> (B, D) user vectors."""
        return self.user_encoder(hist_vecs, hist_mask)

    @staticmethod
    def score(user: torch.Tensor, cand_vecs: torch.Tensor) -> torch.Tensor:
        """(B, D) users, (B, C, D) candidates -> (B, C) click scores (dot products, in float32)."""
        return torch.einsum("bd,bcd->bc", user.float(), cand_vecs.float())

    def forward(self, news_tokens: torch.Tensor, news_mask: torch.Tensor, hist_idx: torch.Tensor,
                hist_mask: torch.Tensor, cand_idx: torch.Tensor) -> torch.Tensor:
        """Distinct titles (U, L) + indices ``hist_idx`` (B, H), ``cand_idx`` (B, C) into them -> scores (B, C)."""
        vecs = self.encode_news(news_tokens, news_mask)  # (U, D)
        user = self.encode_user(vecs[hist_idx], hist_mask)  # (B, D)
        return self.score(user, vecs[cand_idx])  # (B, C)
