"""Linear Transformer (Katharopoulos et al. 2020, "Transformers are RNNs", arXiv 2006.16236).

Per head, with feature map phi(x) = elu(x) + 1 (Eq. 7)::

    out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j) + eps)

The sums run over real keys only (padded keys get phi = 0). Cost O(N dh^2) per head instead of O(N^2 dh). The
sums are accumulated in float32 even under bf16/fp16 autocast (float64 inputs stay float64).

``causal=True`` (paper Eq. 8-12, the RNN form): the sums run over j <= i, ``S_i = S_{i-1} + phi(k_i) v_i^T``,
``z_i = z_{i-1} + phi(k_i)``, computed chunk by chunk (``causal_linear_attention``: O(N C dh + N dh^2) time, no
per-position state in memory); ``step`` carries ``(S, z)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastformer.mixers.base import TokenMixer, register_mixer


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """phi(x) = elu(x) + 1 > 0 (paper Eq. 7)."""
    return F.elu(x) + 1.0


def work_dtype(t: torch.Tensor) -> torch.dtype:
    """float32 for half/bfloat16 tensors, else the tensor's own dtype."""
    return torch.float32 if t.dtype in (torch.float16, torch.bfloat16) else t.dtype


def causal_linear_attention(fq: torch.Tensor, fk: torch.Tensor, v1: torch.Tensor, kvz: torch.Tensor, *,
                            chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """``out_i = phi(q_i)^T (kvz + sum_{j <= i} phi(k_j) v1_j^T)`` for every i, and the state after the last position.

    fq, fk (B, h, N, dh), v1 (B, h, N, e), kvz (B, h, dh, e): the sums of the positions before these. Chunked form
    (as in fla's chunked linear attention): inside a chunk of C positions an explicit lower-triangular (C x C) score
    block, across chunks the carried state, so every step is a matmul and nothing of size N x dh x e is stored (the
    prefix-sum form stored S_i for every i: 3-4x slower on CPU at L 64-256, d_head 16).
    """
    N = fq.shape[2]
    outs = []
    for a in range(0, N, chunk):
        q, k, v = fq[:, :, a:a + chunk], fk[:, :, a:a + chunk], v1[:, :, a:a + chunk]
        C = q.shape[2]
        causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()
        scores = (q @ k.transpose(-1, -2)).masked_fill(~causal, 0.0)  # (B, h, C, C): phi(q_i) . phi(k_j), j <= i
        outs.append(q @ kvz + scores @ v)  # earlier chunks + this chunk's prefix
        kvz = kvz + k.transpose(-1, -2) @ v
    out = torch.cat(outs, dim=2) if outs else v1.new_zeros(v1.shape)
    return out, kvz


@register_mixer("linear_transformer")
class LinearTransformer(TokenMixer):
    """Non-causal linear attention with phi = elu + 1. Options (keyword-only):

    eps   added to the normaliser phi(q_i)^T sum_j phi(k_j) (the fast-transformers library default, 1e-6)
    bias  bias in the q/k/v/out projections
    causal  sums over j <= i only (the paper's autoregressive form)

    There is no attention matrix, hence no attention dropout (the encoder applies dropout after the mixer).
    """

    def __init__(self, d_model: int, n_heads: int, *, eps: float = 1e-6, bias: bool = True, causal: bool = False):
        super().__init__(d_model, n_heads)
        self.causal = bool(causal)
        if eps <= 0:
            raise ValueError(f"linear_transformer eps={eps} must be > 0")
        self.eps = eps
        self.chunk = 32  # causal form: positions per chunk (causal_linear_attention)
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.causal:
            return self._causal(x, mask, None)[0]
        B, N, D = x.shape
        fq, fk, v1 = self._features(x, mask)
        with torch.autocast(device_type=x.device.type, enabled=False):
            kvz = fk.transpose(-1, -2) @ v1  # (B, h, dh, dh + 1): [sum_j phi(k_j) v_j^T | sum_j phi(k_j)]
            num_den = fq @ kvz  # (B, h, N, dh + 1): [numerator | denominator]
            y = num_den[..., :-1] / (num_den[..., -1:] + self.eps)  # (B, h, N, dh)
        return self.out(y.transpose(1, 2).to(x.dtype).reshape(B, N, D))  # autocast (if on) re-casts

    def _features(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        """phi(q), phi(k) with padded keys zeroed, and [v | 1], each (B, h, N, .) in the work dtype. The projection
        runs under the caller's autocast, the feature maps with autocast off (the callers keep it off after)."""
        B, N, _ = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, dh)
        dt = work_dtype(q)
        with torch.autocast(device_type=x.device.type, enabled=False):
            fq, fk = elu_feature_map(q.to(dt)), elu_feature_map(k.to(dt))  # (B, h, N, dh)
            if mask is not None:
                fk = fk * mask[:, None, :, None].to(dt)  # padded keys contribute nothing
            v1 = torch.cat([v.to(dt), torch.ones_like(v[..., :1], dtype=dt)], dim=-1)  # (B, h, N, dh + 1)
        return fq, fk, v1

    def _causal(self, x: torch.Tensor, mask: torch.Tensor | None,
                state: dict | None) -> tuple[torch.Tensor, dict]:
        B, N, D = x.shape
        fq, fk, v1 = self._features(x, mask)
        with torch.autocast(device_type=x.device.type, enabled=False):
            kvz = state["kvz"] if state else fk.new_zeros(B, self.n_heads, self.d_head, self.d_head + 1)
            num_den, kvz = causal_linear_attention(fq, fk, v1, kvz, chunk=self.chunk)  # (B, h, N, dh + 1)
            y = num_den[..., :-1] / (num_den[..., -1:] + self.eps)
        return self.out(y.transpose(1, 2).to(x.dtype).reshape(B, N, D)), {"kvz": kvz}

    def step(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Causal incremental step: state ``{"kvz"}`` (B, h, dh, dh + 1) = [sum phi(k) v^T | sum phi(k)]."""
        if not self.causal:
            return super().step(x, state)
        return self._causal(x, None, state)
