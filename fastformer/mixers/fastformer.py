"""Fastformer additive attention (Wu et al. 2021, arXiv 2108.09084, Eq. 3-6) and the released code's variant.

Paper form (``variant="paper"``), per head with head dim ``dh``::

    q_i, k_i, v_i = W_q x_i, W_k x_i, W_v x_i            (v = q under query-value sharing)
    alpha = softmax_i(w_q . q_i / sqrt(dh))               global query  q* = sum_i alpha_i q_i     (Eq. 3-4)
    p_i = q* (.) k_i                                      query-key interaction                     (Eq. 5)
    beta = softmax_i(w_k . p_i / sqrt(dh))                global key    k* = sum_i beta_i p_i      (Eq. 6)
    u_i = k* (.) v_i;   out_i = W_r u_i + q_i             per-head output transform + query residual

Options exist for the paper's ablations (``interaction`` Fig. 3, ``sharing`` Fig. 4) and for the review's
"redundant modules" questions (``output_transform``, ``global_key_from``, ``key_branch``, ``pooling``,
``query_residual``); every option defaults to the paper's final model.

``variant="official"`` reproduces the released PyTorch ``FastSelfAttention`` (wuch15/Fastformer) exactly: parameters
``query, key, query_att, key_att, transform`` (``nn.Linear`` with bias, ``*_att`` are Linear(D, h) on the full
concatenated vector), value = query, output ``transform(u) + q`` -- so its state dict loads with ``strict=True``.
It avoids the official code's ``repeat`` copies, and padded positions are masked with a finite minimum + max-subtracted
softmax instead of the ``-10000`` additive mask (identical up to exp(-10000) = 0).

``causal=True`` (both variants, every option): position ``i`` pools only positions ``j <= i``. The global query
becomes a prefix sum ``q*_i = sum_{j <= i} softmax_j(w_q . q_j) q_j``; token ``j``'s key meets the global query of its
own prefix, ``p_j = q*_j (.) k_j``, and the global key is again a prefix sum ``k*_i = sum_{j <= i} softmax_j(w_k . p_j)
p_j``; ``out_i = W_r (k*_i (.) v_i) + q_i``. Both pools are ``prefix_softmax_pool`` (running max, O(N d)), and
``step`` carries the two pools' states: the layer is an RNN with a (max, sum, normaliser) state per head and pool.
(Letting every p_j meet the *latest* q*_i instead would make w_k . (q*_i (.) k_j) a query-dependent score per pair
(i, j): softmax attention with query w_k (.) q*_i, O(N^2) -- not the paper's linear-time layer.) The causal form runs
eager (the fused kernels are bidirectional).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from fastformer.mixers.base import TokenMixer, masked_softmax, prefix_softmax_pool as pool, register_mixer
from fastformer.ops import Dropout

SHARING = ("none", "qv", "qv+head", "qv+layer")
INTERACTIONS = ("product", "add", "concat")


def _check(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"fastformer option {name}={value!r} is not one of {list(allowed)}")


class _HeadLinear(nn.Module):
    """A separate (or, with ``shared=True``, one common) ``d_in -> d_out`` linear map for each of ``n_heads`` heads."""

    def __init__(self, n_heads: int, d_in: int, d_out: int, *, shared: bool = False):
        super().__init__()
        n = 1 if shared else n_heads
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out).normal_(0.0, 0.02))
        self.bias = nn.Parameter(torch.zeros(n, d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, h, d_in) -> (B, N, h, d_out)
        B, N, h, d_in = x.shape
        # one batched matmul over the heads, read and written through strided views (h, B*N, d): no permuted copy of
        # x or of the result, the bias added inside it (forward + backward 1.2x faster than einsum + add at
        # (64, 512, 8, 16) on one CPU thread)
        y = torch.baddbmm(self.bias[:, None, :].expand(h, 1, -1), x.reshape(B * N, h, d_in).transpose(0, 1),
                          self.weight.expand(h, -1, -1))  # (h, B*N, d_out)
        return y.transpose(0, 1).view(B, N, h, -1)


@register_mixer("fastformer")
class Fastformer(TokenMixer):
    """Additive attention. Options (all keyword-only):

    variant          "paper" (Eq. 3-6, per-head w_q/w_k and per-head output transform) | "official" (released code)
    sharing          "none" | "qv" | "qv+head" | "qv+layer" (paper Fig. 4; final model "qv+layer": the encoder hands
                     one mixer to every layer)
    interaction      how global vectors meet keys/values: "product" (paper) | "add" | "concat" (Fig. 3)
    output_transform apply W_r to u (False: out = u + q)
    global_key_from  "p" (Eq. 6) | "k": weights beta still come from p, but the pooled vector is sum beta_i k_i, so the
                     global key carries no query-key product (as in some public ports)
    key_branch       False: drop keys entirely, u_i = q* (.) v_i (global-query pooling + gating only)
    pooling          "additive" (learned softmax pooling) | "mean" (masked mean pooling, no score vectors)
    query_residual   add q_i to the output
    impl             "auto" (default: the fused Triton kernels on CUDA tensors when triton is installed and the options
                     are the fused ones, else eager) | "eager" | "compile" (torch.compile of the same math) | "triton"
                     (fused kernels, default options only, fastformer/kernels; an error where they cannot run)
    """

    def __init__(self, d_model: int, n_heads: int, *, variant: str = "paper", sharing: str = "qv+layer",
                 interaction: str = "product", output_transform: bool = True, global_key_from: str = "p",
                 key_branch: bool = True, pooling: str = "additive", query_residual: bool = True,
                 dropout: float = 0.0, impl: str = "auto", max_len: int | None = None, causal: bool = False):
        super().__init__(d_model, n_heads)
        self.causal = bool(causal)
        _check("variant", variant, ("paper", "official"))
        _check("sharing", sharing, SHARING)
        _check("interaction", interaction, INTERACTIONS)
        _check("global_key_from", global_key_from, ("p", "k"))
        _check("pooling", pooling, ("additive", "mean"))
        _check("impl", impl, ("eager", "compile", "triton", "auto"))
        self.variant, self.sharing, self.interaction = variant, sharing, interaction
        self.global_key_from, self.key_branch, self.pooling = global_key_from, key_branch, pooling
        self.use_transform, self.query_residual, self.impl = output_transform, query_residual, impl
        self.share_across_layers = sharing == "qv+layer"
        self.dropout = Dropout(dropout)
        D, h, dh = d_model, n_heads, self.d_head
        self.scale = 1.0 / math.sqrt(dh)
        self.query = nn.Linear(D, D)
        self.key = nn.Linear(D, D) if key_branch else None
        if variant == "official":
            if sharing not in ("qv", "qv+layer") or (interaction, output_transform, global_key_from, key_branch,
                                                       pooling, query_residual) != ("product", True, "p", True,
                                                                                    "additive", True):
                raise ValueError("variant='official' is the released layer (query-value sharing, product interaction, "
                                 "no ablation options); use variant='paper' for the ablations")
            self.query_att, self.key_att = nn.Linear(D, h), nn.Linear(D, h)
            self.transform = nn.Linear(D, D)
        else:
            head_shared = sharing == "qv+head"
            self.value = nn.Linear(D, D) if sharing == "none" else None
            if pooling == "additive":  # per-head score vectors w_q, w_k in R^dh (Eq. 3, 5)
                self.w_q = nn.Parameter(torch.empty(1 if head_shared else h, dh).normal_(0.0, 0.02))
                if key_branch:
                    self.w_k = nn.Parameter(torch.empty(1 if head_shared else h, dh).normal_(0.0, 0.02))
            if interaction == "concat":  # [global; token] -> dh, per head
                self.mix_qk = _HeadLinear(h, 2 * dh, dh, shared=head_shared) if key_branch else None
                self.mix_kv = _HeadLinear(h, 2 * dh, dh, shared=head_shared)
            self.transform = _HeadLinear(h, dh, dh, shared=head_shared) if output_transform else None
        for m in self.modules():  # official init: N(0, 0.02), zero bias
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)
        self._core = torch.compile(self._forward, dynamic=True) if impl == "compile" else self._forward
        if impl in ("triton", "auto"):  # fused Triton kernels; "auto" = triton on CUDA when available, else eager
            from fastformer.kernels import select_core
            self._core = select_core(self, impl)

    # ----------------------------------------------------------------------------------------------------------
    def _weights(self, x: torch.Tensor, w: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, N, h, dh) -> pooling weights (B, N, h): softmax_i(w . x_i / sqrt(dh)), or a masked mean."""
        if self.pooling == "mean":
            m = x.new_ones(x.shape[:3]) if mask is None else mask[:, :, None].to(x.dtype).expand(x.shape[:3])
            return m / m.sum(1, keepdim=True).clamp_min(1.0)
        scores = (x * w).sum(-1) * self.scale  # (B, N, h)
        return masked_softmax(scores, None if mask is None else mask[:, :, None], dim=1)

    def _pool(self, x: torch.Tensor, w: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, N, h, dh) -> (B, h, dh)."""
        return torch.einsum("bnh,bnhd->bhd", self._weights(x, w, mask), x)

    def _interact(self, g: torch.Tensor, x: torch.Tensor, mix: nn.Module | None) -> torch.Tensor:
        """global g: (B, h, dh) with tokens x: (B, N, h, dh) -> (B, N, h, dh)."""
        if g.dim() == 3:
            g = g[:, None]  # (B, 1, h, dh); causal: already (B, N, h, dh), one global vector per prefix
        if self.interaction == "product":
            return g * x
        if self.interaction == "add":
            return g + x
        return mix(torch.cat([g.expand_as(x), x], dim=-1))

    def _forward_official(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        B, N, D = x.shape
        h, dh = self.n_heads, self.d_head
        m = None if mask is None else mask[:, :, None]  # (B, N, 1)
        q = self.query(x)  # (B, N, D)
        k = self.key(x)
        alpha = masked_softmax(self.query_att(q) * self.scale, m, dim=1)  # (B, N, h)
        q_glob = torch.einsum("bnh,bnhd->bhd", alpha, q.view(B, N, h, dh)).reshape(B, 1, D)
        p = k * q_glob  # (B, N, D)
        beta = masked_softmax(self.key_att(p) * self.scale, m, dim=1)  # (B, N, h)
        k_glob = torch.einsum("bnh,bnhd->bhd", beta, p.view(B, N, h, dh)).reshape(B, 1, D)
        return self.transform(k_glob * q) + q

    def _scores(self, x: torch.Tensor, w: torch.Tensor | None) -> torch.Tensor:
        """Pooling scores (B, N, h) of x (B, N, h, dh): w . x_i / sqrt(dh), or zeros (mean pooling)."""
        if self.pooling == "mean":
            return x.new_zeros(x.shape[:3])
        return (x * w).sum(-1) * self.scale

    def _causal(self, x: torch.Tensor, mask: torch.Tensor | None,
                state: dict | None) -> tuple[torch.Tensor, dict]:
        """The causal form (module docstring): x (B, N, D) -> (B, N, D) and the pools' states after position N."""
        B, N, D = x.shape
        h, dh = self.n_heads, self.d_head
        state = state or {}
        if self.variant == "official":
            q = self.query(x)  # (B, N, D)
            k = self.key(x)
            q_glob, sq = pool(self.query_att(q) * self.scale, q.view(B, N, h, dh), mask, state.get("q"))
            p = k * q_glob.reshape(B, N, D)  # (B, N, D): each key meets its own prefix's global query
            k_glob, sk = pool(self.key_att(p) * self.scale, p.view(B, N, h, dh), mask, state.get("k"))
            return self.transform(k_glob.reshape(B, N, D) * q) + q, {"q": sq, "k": sk}
        q = self.query(x).view(B, N, h, dh)
        v = q if self.value is None else self.value(x).view(B, N, h, dh)
        q_glob, sq = pool(self._scores(q, getattr(self, "w_q", None)), q, mask, state.get("q"))  # (B, N, h, dh)
        q_glob = self.dropout(q_glob)
        new = {"q": sq}
        if self.key_branch:
            k = self.key(x).view(B, N, h, dh)
            p = self._interact(q_glob, k, getattr(self, "mix_qk", None))  # (B, N, h, dh)
            src = p if self.global_key_from == "p" else k  # weights always from p (Eq. 6 / the "k" ablation)
            k_glob, new["k"] = pool(self._scores(p, getattr(self, "w_k", None)), src, mask, state.get("k"))
            g = self.dropout(k_glob)
        else:
            g = q_glob
        return self._output(g, v, q), new

    def step(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        if not self.causal:
            return super().step(x, state)
        return self._causal(x, None, state)

    def _forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.causal:
            return self._causal(x, mask, None)[0]
        if self.variant == "official":
            return self._forward_official(x, mask)
        B, N, D = x.shape
        h, dh = self.n_heads, self.d_head
        q = self.query(x).view(B, N, h, dh)
        v = q if self.value is None else self.value(x).view(B, N, h, dh)
        q_glob = self.dropout(self._pool(q, getattr(self, "w_q", None), mask))  # (B, h, dh)
        if self.key_branch:
            k = self.key(x).view(B, N, h, dh)
            p = self._interact(q_glob, k, getattr(self, "mix_qk", None))  # (B, N, h, dh)
            w_k = getattr(self, "w_k", None)
            if self.global_key_from == "p":  # Eq. 6
                k_glob = self._pool(p, w_k, mask)
            else:  # weights from p, pooled vector from the raw keys
                k_glob = torch.einsum("bnh,bnhd->bhd", self._weights(p, w_k, mask), k)
            g = self.dropout(k_glob)
        else:
            g = q_glob
        return self._output(g, v, q)

    def _output(self, g: torch.Tensor, v: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """Eq. 6's last step, shared by the bidirectional and the causal forms: u = g * v (the interaction), then
        W_r u (+ q). ``g``: (B, h, dh) or (B, N, h, dh) global key (causal: per prefix); v, q: (B, N, h, dh)."""
        B, N = v.shape[:2]
        u = self._interact(g, v, getattr(self, "mix_kv", None))  # (B, N, h, dh)
        out = self.transform(u) if self.transform is not None else u
        if self.query_residual:
            out = out + q
        return out.reshape(B, N, -1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self._core(x, mask)

    def impl_report(self) -> dict:
        """Which implementation this mixer ran (``fastformer.mixers.implementation_report`` collects it into the
        run's metrics.json): ``{"requested", "ran", "fallbacks", "checks"}``; ``impl="auto"`` reports its numeric
        checks and fallbacks (fastformer/kernels ``_Auto``)."""
        report = getattr(self._core, "report", None)
        if report is not None:
            return report()
        fallbacks = []
        if self.impl == "auto":  # select_core chose eager at construction
            from fastformer.kernels import TRITON_AVAILABLE, unsupported_options
            fallbacks.append("auto -> eager: " + ("triton not installed" if not TRITON_AVAILABLE else
                                                  "options not fused: " + ", ".join(unsupported_options(self))))
        ran = {"auto": "eager", "eager": "eager", "compile": "compile", "triton": "triton"}[self.impl]
        return {"requested": self.impl, "ran": [ran], "fallbacks": fallbacks, "checks": []}
