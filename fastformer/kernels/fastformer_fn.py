"""``FastformerAdditive``: autograd Function over the Triton kernels, and the mixer forward that uses it.

    u = FastformerAdditive.apply(q, k, w_q, b_q, w_k, b_k, mask, scale)                 # q, k, u: (B, N, D)
    k_glob = FastformerAdditive.apply(q, k, w_q, b_q, w_k, b_k, mask, scale, True)      # (B, D), fp32

computes, per head j (columns j*dh ... (j+1)*dh) with masked max-subtracted softmaxes over n::

    alpha = softmax_n(scale * (q_n W_q + b_q))        q_glob = sum_n alpha_n q_n                    (B, D)
    p_n = k_n (.) q_glob;  beta = softmax_n(scale * (p_n W_k + b_k))   k_glob = sum_n beta_n p_n    (B, D)
    u_n = k_glob (.) q_n

``W_*: (D, h)`` are the official ``Linear(D, h).weight.T`` or the paper's per-head vectors as a block-diagonal matrix.
Saved for backward: q, k, q_glob, k_glob and the softmax max/sum (B, h); the weights alpha, beta and p are recomputed.

The mixer output ``transform(u) + q`` is then computed one of two ways (``fold``):

* ``fold=False`` ("gate"): a kernel writes u, cuBLAS applies the transform, the residual is one more add.
* ``fold=True``: the gate, the output transform and the query residual become ONE batched GEMM with a per-sequence
  weight, ``out_b = q_b @ (I + diag(k_glob_b) W_r) + b_r`` (``W_r``: the transform as a (D, D) matrix, block-diagonal
  for the paper's per-head transform) -- u and transform(u) are never written. It costs B * D^2 extra memory for the
  weights and h-fold GEMM FLOPs for the paper's per-head transform, so it pays off for long sequences:
  ``fold=None`` picks it when ``N >= D``. That rule is a memory-traffic estimate, not a measurement: in 16-bit the
  per-sequence weights move about 10 B D^2 bytes (forward + backward) and the fold saves about 18 B N D (u, transform(u)
  and the residual's reads/writes): break-even near N = D / 2, so N >= D leaves a margin. The weights are built in the
  GEMM's dtype, so the fold is about as accurate as eager in that dtype (tested); ``scripts/bench_fastformer_gpu.py``
  times both paths (``triton_gate`` / ``triton_fold``) on a card.
"""
from __future__ import annotations

import dataclasses
import os

import torch
import triton
import triton.language as tl

from fastformer.kernels.fastformer_triton import _dot_rows_bwd, _gate_fwd, _pool_bwd, _pool_fwd
from fastformer.kernels.launch import Launch, dot_args, pads

_TL = {"fp32": tl.float32, "bf16": tl.bfloat16, "fp16": tl.float16}


def _dot_consts(dot: str, dtype) -> dict:
    """kernel constexprs PREC, DOT for the rule ``dot`` (launch.py) and input ``dtype``."""
    prec, name = dot_args(dot, dtype)
    if name == "bf16" and interpreting():  # Triton's interpreter (3.9) gets bf16 tl.dot wrong (it multiplies the
        name = "fp32"                       # raw bits); the fp16 tests cover the 16-bit operand path there
    return dict(PREC=prec, DOT=_TL[name])


def _split(B: int, N: int, bn: int, device: torch.device, per: int | None) -> tuple[int, int]:
    """(rows per program, S programs per batch row): enough programs to fill the GPU, few partials."""
    if per is None:
        target = 4 * torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 4
        blocks = triton.cdiv(N, bn)
        per = bn * triton.cdiv(blocks, max(1, triton.cdiv(target, B)))
    return per, triton.cdiv(N, per)


class FastformerAdditive(torch.autograd.Function):
    """See the module docstring. ``launch`` (a ``launch.Launch``) / ``rows_per_program`` override the launch rules."""

    @staticmethod
    def forward(ctx, q, k, w_q, b_q, w_k, b_k, mask, scale, glob_only=False, launch=None, rows_per_program=None):
        B, N, D = q.shape
        H = w_q.shape[1]
        if D % H or D // H < 1 or k.shape != q.shape or w_k.shape != (D, H):
            raise ValueError(f"FastformerAdditive: bad shapes q {tuple(q.shape)}, k {tuple(k.shape)}, "
                             f"w_q {tuple(w_q.shape)}, w_k {tuple(w_k.shape)}")
        q, k = q.contiguous(), k.contiguous()
        w_q, w_k = w_q.contiguous(), w_k.contiguous()
        D_pad, H_pad = pads(D, H)
        arch = 90  # the interpreter (CPU tests) follows the sm_90 rules
        if q.is_cuda:
            major, minor = torch.cuda.get_device_capability(q.device)
            arch = 10 * major + minor
        lc = (launch or Launch()).resolve(D, H, q.dtype, arch)
        bn, nw, ns = lc.block_n, lc.num_warps, lc.num_stages
        per, S = _split(B, N, bn, q.device, rows_per_program)
        f32 = dict(device=q.device, dtype=torch.float32)
        m8 = mask.contiguous().view(torch.uint8) if mask is not None else q  # dummy pointer when no mask
        consts = dict(D=D, H=H, DH=D // H, D_PAD=D_pad, H_PAD=H_pad, BLOCK_N=bn)
        dots, dots_bwd = _dot_consts(lc.dot, q.dtype), _dot_consts(lc.dot_bwd, q.dtype)
        part_q = (torch.empty(B, S, H_pad, **f32), torch.empty(B, S, H_pad, **f32), torch.empty(B, S, D_pad, **f32))
        part_k = (torch.empty(B, S, H_pad, **f32), torch.empty(B, S, H_pad, **f32), torch.empty(B, S, D_pad, **f32))
        q_glob, k_glob = torch.empty(B, D_pad, **f32), torch.empty(B, D_pad, **f32)
        st_q, st_k = torch.empty(B, 2, H_pad, **f32), torch.empty(B, 2, H_pad, **f32)  # softmax max, sum
        u = q if glob_only else torch.empty_like(q)  # glob_only: never written (WRITE_U=False)
        dummy_b = w_q  # pointer never read when HAS_BIAS is False
        grid = (B, S)
        _pool_fwd[grid](q, w_q, b_q if b_q is not None else dummy_b, m8, *part_q, *part_q, q_glob, st_q,
                        N, S, per, scale, **consts, HAS_MASK=mask is not None, HAS_BIAS=b_q is not None,
                        GATE=False, **dots, num_warps=nw, num_stages=ns)
        _pool_fwd[grid](k, w_k, b_k if b_k is not None else dummy_b, m8, *part_q, *part_k, q_glob, st_q,
                        N, S, per, scale, **consts, HAS_MASK=mask is not None, HAS_BIAS=b_k is not None,
                        GATE=True, **dots, num_warps=nw, num_stages=ns)
        _gate_fwd[(B, 1) if glob_only else grid](q, u, *part_k, k_glob, st_k, N, S, per, D=D, DH=D // H,
                                                  D_PAD=D_pad, H_PAD=H_pad, BLOCK_N=bn, WRITE_U=not glob_only,
                                                  num_warps=nw, num_stages=ns)
        ctx.save_for_backward(q, k, w_q, b_q, w_k, b_k, mask, q_glob, k_glob, st_q, st_k)
        ctx.cfg = (scale, bn, per, S, D_pad, H_pad, dots_bwd, nw, ns, glob_only)
        return k_glob[:, :D].clone() if glob_only else u

    @staticmethod
    def backward(ctx, dout):
        q, k, w_q, b_q, w_k, b_k, mask, q_glob, k_glob, st_q, st_k = ctx.saved_tensors
        scale, bn, per, S, D_pad, H_pad, dots, nw, ns, glob_only = ctx.cfg
        B, N, D = q.shape
        H = w_q.shape[1]
        f32 = dict(device=q.device, dtype=torch.float32)
        m8 = mask.contiguous().view(torch.uint8) if mask is not None else q
        consts = dict(D=D, H=H, DH=D // H, D_PAD=D_pad, H_PAD=H_pad, BLOCK_N=bn)
        grid = (B, S)
        if glob_only:  # dout = d k_glob (B, D): one "partial" per batch row; dq gets no u term here
            du, n_part = q, 1  # du: a pointer that is never read (SIDE=False)
            dkg_part = torch.zeros(B, 1, D_pad, **f32)
            dkg_part[:, 0, :D] = dout
        else:
            du, n_part = dout.contiguous(), S
            dkg_part = torch.empty(B, S, D_pad, **f32)  # d k_glob = sum_n dU_n (.) q_n
            _dot_rows_bwd[grid](du, q, dkg_part, N, S, per, D=D, D_PAD=D_pad, BLOCK_N=bn, num_warps=nw,
                                num_stages=ns)
        dk, dq = torch.empty_like(k), torch.empty_like(q)
        dqg_part = torch.empty(B, S, D_pad, **f32)  # d q_glob partials
        dw_k, db_k = torch.empty(B, S, D_pad, H_pad, **f32), torch.empty(B, S, H_pad, **f32)
        dw_q, db_q = torch.empty(B, S, D_pad, H_pad, **f32), torch.empty(B, S, H_pad, **f32)
        _pool_bwd[grid](k, dk, du, w_k, b_k if b_k is not None else w_k, m8, q_glob, k_glob, st_k, dkg_part,
                        k_glob, dqg_part, dw_k, db_k, N, S, per, n_part, scale, **consts,
                        HAS_MASK=mask is not None, HAS_BIAS=b_k is not None, GATE=True, SIDE=False, **dots,
                        num_warps=nw, num_stages=ns)
        _pool_bwd[grid](q, dq, du, w_q, b_q if b_q is not None else w_q, m8, q_glob, q_glob, st_q, dqg_part,
                        k_glob, dqg_part, dw_q, db_q, N, S, per, S, scale, **consts, HAS_MASK=mask is not None,
                        HAS_BIAS=b_q is not None, GATE=False, SIDE=not glob_only, **dots, num_warps=nw,
                        num_stages=ns)

        def red(part, w):  # (B, S, D_pad, H_pad) or (B, S, H_pad) partials -> parameter gradient
            if w is None:
                return None
            g = part.sum((0, 1))
            return (g[:D, :H] if g.dim() == 2 else g[:H]).to(w.dtype)

        return dq, dk, red(dw_q, w_q), red(db_q, b_q), red(dw_k, w_k), red(db_k, b_k), None, None, None, None, None


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def block_diag_scores(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """paper score vectors (h or 1, dh) -> block-diagonal (D, h) with column j = w_j on rows j*dh ... (j+1)*dh."""
    w = w.expand(n_heads, -1)  # (h, dh)
    eye = torch.eye(n_heads, device=w.device, dtype=w.dtype)
    return (w[:, :, None] * eye[:, None, :]).reshape(-1, n_heads)  # (h, dh, h) -> (D, h)


def fold_rule(N: int, D: int) -> bool:
    """the output path for sequence length N and width D: fold (one batched GEMM) when N >= D (module docstring)."""
    return N >= D


def transform_matrix(m) -> tuple[torch.Tensor, torch.Tensor]:
    """The mixer's output transform as ``(W, b)`` with ``transform(u) = u @ W + b`` on the concatenated heads:
    official ``Linear(D, D)`` -> ``(weight.T, bias)``; the paper's per-head (or head-shared) ``(h|1, dh, dh)`` maps ->
    block-diagonal ``(D, D)`` and the flattened ``(D,)`` bias."""
    if m.variant == "official":
        return m.transform.weight.t(), m.transform.bias
    w, b = m.transform.weight, m.transform.bias  # (h|1, dh, dh), (h|1, dh)
    h, dh = m.n_heads, m.d_head
    w, b = w.expand(h, dh, dh), b.expand(h, dh)
    eye = torch.eye(h, device=w.device, dtype=w.dtype)
    return (w[:, :, None, :] * eye[:, None, :, None]).reshape(h * dh, h * dh), b.reshape(-1)


def fastformer_triton_forward(m, x: torch.Tensor, mask: torch.Tensor | None, *, fold: bool | None = None,
                              launch: Launch | None = None, block_n: int | None = None,
                              rows_per_program: int | None = None) -> torch.Tensor:
    """The ``fastformer`` mixer ``m`` (default sharing, product interaction) with the fused additive part.
    ``fold``: output by one batched GEMM with k_glob folded into its weight (True), by the u kernel + transform GEMM
    (False), or by the rule ``N >= D`` (None; see the module docstring). ``block_n`` / ``rows_per_program``
    and ``launch`` override the launch rules (tests use small shapes to exercise tails/splits)."""
    if block_n is not None:
        launch = dataclasses.replace(launch or Launch(), block_n=block_n)
    if not (x.is_cuda or interpreting()):
        raise RuntimeError("fastformer impl='triton' needs a CUDA tensor (or TRITON_INTERPRET=1 for CPU tests); "
                           "use impl='auto' to fall back to eager off-GPU")
    B, N, D = x.shape
    q, k = m.query(x), m.key(x)  # (B, N, D) each, cuBLAS
    if m.variant == "official":
        wq, bq = m.query_att.weight.t(), m.query_att.bias  # (D, h), (h,)
        wk, bk = m.key_att.weight.t(), m.key_att.bias
    else:
        wq, bq = block_diag_scores(m.w_q, m.n_heads), None
        wk, bk = block_diag_scores(m.w_k, m.n_heads), None
    if fold is None:
        fold = fold_rule(N, D)
    if fold:  # out_b = q_b @ (I + diag(k_glob_b) W) + b: gate, transform and residual in one batched GEMM
        k_glob = FastformerAdditive.apply(q, k, wq, bq, wk, bk, mask, m.scale, True, launch, rows_per_program)
        w, b = transform_matrix(m)
        dt = q.dtype  # the GEMM's dtype (bf16 under autocast): build the (B, D, D) weights in it, not in fp32
        w_b = torch.addcmul(torch.eye(D, device=q.device, dtype=dt), k_glob.to(dt)[:, :, None], w.to(dt))
        return torch.baddbmm(b.to(dt), q, w_b)  # (B, N, D)
    u = FastformerAdditive.apply(q, k, wq, bq, wk, bk, mask, m.scale, False, launch, rows_per_program)
    if m.variant == "official":
        return m.transform(u) + q  # Linear(D, D), cuBLAS
    return m.transform(u.view(B, N, m.n_heads, m.d_head)).reshape(B, N, D) + q
