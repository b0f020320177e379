"""Linear Transformer (Katharopoulos et al. 2020, "Transformers are RNNs", arXiv 2006.16236), non-causal form.

Per head, with feature map phi(x) = elu(x) + 1 (Eq. 7)::

    out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j) + eps)

The sums run over real keys only (padded keys get phi = 0). Cost O(N dh^2) per head instead of O(N^2 dh). The
sums are accumulated in float32 even under bf16/fp16 autocast (float64 inputs stay float64).
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


@register_mixer("linear_transformer")
class LinearTransformer(TokenMixer):
    """Non-causal linear attention with phi = elu + 1. Options (keyword-only):

    eps   added to the normaliser phi(q_i)^T sum_j phi(k_j) (the fast-transformers library default, 1e-6)
    bias  bias in the q/k/v/out projections

    There is no attention matrix, hence no attention dropout (the encoder applies dropout after the mixer).
    """

    def __init__(self, d_model: int, n_heads: int, *, eps: float = 1e-6, bias: bool = True):
        super().__init__(d_model, n_heads)
        if eps <= 0:
            raise ValueError(f"linear_transformer eps={eps} must be > 0")
        self.eps = eps
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).view(B, N, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, dh)
        dt = work_dtype(q)
        with torch.autocast(device_type=x.device.type, enabled=False):
            fq, fk = elu_feature_map(q.to(dt)), elu_feature_map(k.to(dt))  # (B, h, N, dh)
            if mask is not None:
                fk = fk * mask[:, None, :, None].to(dt)  # padded keys contribute nothing
            v1 = torch.cat([v.to(dt), torch.ones_like(v[..., :1], dtype=dt)], dim=-1)  # (B, h, N, dh + 1)
            kvz = fk.transpose(-1, -2) @ v1  # (B, h, dh, dh + 1): [sum_j phi(k_j) v_j^T | sum_j phi(k_j)]
            num_den = fq @ kvz  # (B, h, N, dh + 1): [numerator | denominator]
            y = num_den[..., :-1] / (num_den[..., -1:] + self.eps)  # (B, h, N, dh)
        return self.out(y.transpose(1, 2).to(x.dtype).reshape(B, N, D))  # autocast (if on) re-casts
