"""Performer FAVOR+ attention (Choromanski et al. 2021, "Rethinking Attention with Performers", arXiv 2009.14794).

Softmax kernel exp(q.k / sqrt(dh)) approximated with m = ``n_features`` positive orthogonal random features
(Lemma 1 + Sec. 2.4): with x' = x / dh^(1/4) and rows w_r of the projection W (m, dh)::

    phi(x) = exp(W x' - |x'|^2 / 2) / sqrt(m)          (m,) > 0; constant factors cancel in out_i
    out_i  = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i)^T sum_j phi(k_j))         O(N m dh)

W is made of stacked dh x dh blocks of orthogonalised Gaussian rows, each row rescaled to the norm of an independent
Gaussian vector (so rows are marginally N(0, I)). W is a buffer (never trained), one per layer, shared by all heads.
Stability: the exponent is shifted by its max over features (per query) for queries and by the max over all real
keys and features for keys; both shifts cancel between numerator and denominator, so the result is unchanged
(the shifts are detached).
All feature maths runs in float32 under bf16/fp16 autocast. Padded keys get phi = 0.

Redrawing (``redraw_every``): in training, W is redrawn before every ``redraw_every``-th forward (1 = every forward,
as the official JAX code's ``redraw_features=True``; 0 = never). Eval never redraws. Draws are reproducible: draw t
uses a generator seeded with (``seed`` buffer, t), both saved in the state dict.

``causal=True`` (the paper's unidirectional FAVOR+, Fig. 2: prefix sums of phi(k_j) v_j^T and of phi(k_j))::

    out_i = phi(q_i)^T (sum_{j<=i} phi(k_j) v_j^T) / (phi(q_i)^T sum_{j<=i} phi(k_j))

with the same features, projection buffer and redraw policy as the bidirectional form (``forward`` redraws as above;
``step`` never redraws, since its state holds sums under the current W). The key shift above is a max over the whole
sequence, which ``step`` cannot know and which lets later keys move earlier outputs by rounding, so the causal form
uses a running max instead: query i's sums are referenced to ``M_i = max_{j<=i} max_r (W k'_j - |k'_j|^2/2)_r``
(detached; it cancels). Computed as a chunked scan, not as cumulative sums (a running reference cannot be factored
out of a cumsum without overflow; and cumsums would materialise O(N m dh) per head): ``chunk`` positions at a time,
inside a chunk an explicit lower-triangular (C x C) block ``(phi(q_i).phi(k_j)) exp(M_j - M_i)``, across chunks the
carried ``[S | z]`` (m x (dh + 1) per head, rescaled by ``exp(M_prev - M_i)``). Time O(N (C + dh) m), memory
O(N m + N C) per head plus one m x (dh + 1) state per chunk kept for backward. ``step`` carries ``{"kvz": [S | z]
(B, h, m, dh + 1), "m": M (B, h)}``.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from fastformer.mixers.base import TokenMixer, register_mixer
from fastformer.mixers.linear_transformer import work_dtype


def orthogonal_gaussian(n_rows: int, dim: int, generator: torch.Generator) -> torch.Tensor:
    """(n_rows, dim) matrix: blocks of dim orthogonal directions, each row scaled by a chi(dim)-distributed norm."""
    blocks = []
    for _ in range(math.ceil(n_rows / dim)):
        g = torch.randn(dim, dim, generator=generator, dtype=torch.float64)
        qmat, _ = torch.linalg.qr(g)  # (dim, dim), orthonormal columns
        blocks.append(qmat.T)  # rows orthonormal
    w = torch.cat(blocks)[:n_rows]  # (n_rows, dim)
    norms = torch.randn(n_rows, dim, generator=generator, dtype=torch.float64).norm(dim=1)  # (n_rows,)
    return w * norms[:, None]


def key_exponent(x: torch.Tensor, w: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Keys' feature exponents W x - |x|^2 / 2: x (B, h, N, dh) already scaled by dh^-1/4, w (m, dh) -> (B, h, N, m),
    -inf at padded keys (``mask`` (B, N) bool, True = real)."""
    x_aug = torch.cat([x, x.square().sum(-1, keepdim=True) / 2], dim=-1)  # (B, h, N, dh + 1)
    w_aug = torch.cat([w, -torch.ones_like(w[:, :1])], dim=-1)  # (m, dh + 1)
    expo = x_aug @ w_aug.T  # (B, h, N, m) = W x - |x|^2 / 2 in one matmul
    if mask is not None:
        expo = expo.masked_fill_(~mask[:, None, :, None], float("-inf"))
    return expo


def favor_features(x: torch.Tensor, w: torch.Tensor, *, is_query: bool,
                   mask: torch.Tensor | None = None) -> torch.Tensor:
    """Positive random features up to a constant factor. x: (B, h, N, dh) already scaled by dh^-1/4; w: (m, dh)
    -> (B, h, N, m) = exp(W x - |x|^2 / 2 - shift) with the shift (and 1/sqrt(m)) dropped because it cancels.

    Queries: shift = max over features per query (|x|^2 / 2 is per-query too, so only W x remains).
    Keys: shift = max over all real keys and features per (sequence, head); ``mask`` (B, N) bool marks real keys,
    padded keys get features exactly 0 and do not enter the shift.
    """
    if is_query:
        proj = x @ w.T  # (B, h, N, m)
        return (proj - proj.detach().amax(-1, keepdim=True)).exp_()  # (B, h, N, m), max feature per query = 1
    expo = key_exponent(x, w, mask)  # (B, h, N, m)
    shift = expo.detach().amax(dim=(2, 3), keepdim=True)  # (B, h, 1, 1): one constant per sequence and head
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))  # all-padding sequence
    return expo.sub_(shift).exp_()  # (B, h, N, m), max feature over real keys = 1


@register_mixer("performer")
class Performer(TokenMixer):
    """FAVOR+ linear attention. Options (keyword-only):

    n_features    m, random features per head (Performer experiments: 256)
    redraw_every  training forwards between redraws of the projection (1 = every forward, 0 = fixed)
    bias          bias in the q/k/v/out projections
    causal        sums over j <= i only (unidirectional FAVOR+, with ``step``)
    chunk         positions per block of the causal scan; changes speed and memory, not results
    """

    def __init__(self, d_model: int, n_heads: int, *, n_features: int = 256, redraw_every: int = 1,
                 bias: bool = True, causal: bool = False, chunk: int = 64):
        super().__init__(d_model, n_heads)
        if n_features < 1:
            raise ValueError(f"performer n_features={n_features} must be >= 1")
        if redraw_every < 0:
            raise ValueError(f"performer redraw_every={redraw_every} must be >= 0 (0 = never redraw)")
        if chunk < 1:
            raise ValueError(f"performer chunk={chunk} must be >= 1")
        self.causal, self.chunk = bool(causal), chunk
        self.n_features, self.redraw_every = n_features, redraw_every
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.register_buffer("seed", torch.randint(0, 2**62, (), dtype=torch.int64))  # from the global RNG
        self.register_buffer("n_draws", torch.zeros((), dtype=torch.int64))  # projections drawn so far
        self.register_buffer("n_calls", torch.zeros((), dtype=torch.int64))  # training forwards so far
        self.register_buffer("projection", torch.empty(n_features, self.d_head))  # (m, dh)
        self.redraw()

    @torch.no_grad()
    def redraw(self) -> None:
        """Draw a new projection W (m, dh), deterministically from (seed, number of previous draws)."""
        gen = torch.Generator().manual_seed(int(self.seed) + 7919 * int(self.n_draws))
        w = orthogonal_gaussian(self.n_features, self.d_head, gen)
        self.projection.copy_(w.to(self.projection))
        self.n_draws += 1

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.training and self.redraw_every > 0:
            if int(self.n_calls) > 0 and int(self.n_calls) % self.redraw_every == 0:
                self.redraw()
            self.n_calls += 1
        if self.causal:
            return self._causal(x, mask, None)[0]
        B, N, D = x.shape
        q, k, v = self._qkv(x)
        dt = work_dtype(q)
        with torch.autocast(device_type=x.device.type, enabled=False):
            scale = self.d_head ** -0.25
            w = self.projection.to(dt)  # (m, dh)
            fq = favor_features(q.to(dt) * scale, w, is_query=True)  # (B, h, N, m)
            fk = favor_features(k.to(dt) * scale, w, is_query=False, mask=mask)  # (B, h, N, m)
            v1 = torch.cat([v.to(dt), torch.ones_like(v[..., :1], dtype=dt)], dim=-1)  # (B, h, N, dh + 1)
            kvz = fk.transpose(-1, -2) @ v1  # (B, h, m, dh + 1): [sum_j phi(k_j) v_j^T | sum_j phi(k_j)]
            num_den = fq @ kvz  # (B, h, N, dh + 1): [numerator | denominator]
            y = num_den[..., :-1] / num_den[..., -1:].clamp_min(torch.finfo(dt).tiny)  # (B, h, N, dh)
        return self.out(y.transpose(1, 2).to(x.dtype).reshape(B, N, D))

    def _qkv(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        B, N, _ = x.shape
        return self.qkv(x).view(B, N, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, dh)

    def _causal(self, x: torch.Tensor, mask: torch.Tensor | None,
                state: dict | None) -> tuple[torch.Tensor, dict]:
        """Unidirectional FAVOR+ as a chunked scan with a running max (module docstring) -> output, state."""
        B, N, D = x.shape
        q, k, v = self._qkv(x)
        dt = work_dtype(q)
        with torch.autocast(device_type=x.device.type, enabled=False):
            scale = self.d_head ** -0.25
            w = self.projection.to(dt)  # (m, dh)
            fq = favor_features(q.to(dt) * scale, w, is_query=True)  # (B, h, N, m), <= 1
            expo = key_exponent(k.to(dt) * scale, w, mask)  # (B, h, N, m), -inf at padded keys
            v1 = torch.cat([v.to(dt), torch.ones_like(v[..., :1], dtype=dt)], dim=-1)  # (B, h, N, dh + 1)
            neg = torch.finfo(dt).min
            kmax = expo.detach().amax(-1).clamp_min(neg)  # (B, h, N): each key's largest exponent (padded: neg)
            if state:
                m0, kvz0 = state["m"], state["kvz"]  # (B, h), (B, h, m, dh + 1): sums referenced to exp(m0)
            else:
                m0 = kmax.new_full((B, self.n_heads), neg)
                kvz0 = v1.new_zeros(B, self.n_heads, self.n_features, self.d_head + 1)
            tiny = torch.finfo(dt).tiny
            ys = []
            for a in range(0, N, self.chunk):
                fqc, ec, vc = fq[:, :, a:a + self.chunk], expo[:, :, a:a + self.chunk], v1[:, :, a:a + self.chunk]
                C = fqc.shape[2]
                M = torch.maximum(torch.cummax(kmax[:, :, a:a + C], -1).values, m0[..., None])  # (B, h, C)
                fk = torch.exp(ec - M[..., None])  # (B, h, C, m): key j referenced to its own M_j, <= 1
                later = ~torch.ones(C, C, dtype=torch.bool, device=x.device).tril()  # (C_i, C_j): j > i
                decay = torch.exp((M[..., None, :] - M[..., :, None]).masked_fill(later, float("-inf")))  # M_j - M_i
                att = (fqc @ fk.transpose(-1, -2)) * decay  # (B, h, C, C): phi(q_i).phi(k_j) under reference M_i
                carry = torch.exp(m0[..., None] - M)  # (B, h, C) <= 1: the earlier chunks' sums rescaled to M_i
                num_den = att @ vc + carry[..., None] * (fqc @ kvz0)  # (B, h, C, dh + 1)
                ys.append(num_den[..., :-1] / num_den[..., -1:].clamp_min(tiny))
                last = M[..., -1]  # (B, h)
                to_last = torch.exp(M - last[..., None])  # (B, h, C) <= 1
                kvz0 = (torch.exp(m0 - last)[..., None, None] * kvz0
                        + (fk * to_last[..., None]).transpose(-1, -2) @ vc)  # (B, h, m, dh + 1)
                m0 = last
            y = torch.cat(ys, dim=2) if ys else v1.new_zeros(B, self.n_heads, 0, self.d_head)  # (B, h, N, dh)
        return self.out(y.transpose(1, 2).to(x.dtype).reshape(B, N, D)), {"kvz": kvz0, "m": m0}

    def step(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Causal incremental step (never redraws): state ``{"kvz"}`` (B, h, m, dh + 1) = [sum phi(k) v^T | sum
        phi(k)] referenced to ``exp({"m"})`` (B, h), the running max of the key exponents."""
        if not self.causal:
            return super().step(x, state)
        return self._causal(x, None, state)

    def extra_repr(self) -> str:
        return f"n_features={self.n_features}, redraw_every={self.redraw_every}" + (
            f", causal=True, chunk={self.chunk}" if self.causal else "")
