"""Triton kernels for Fastformer's additive part (the GEMMs stay in cuBLAS, see ``fastformer_fn.py``).

Both variants reduce to one form: per token n and head j, a score ``s[n, j] = scale * (x_n . W[:, j] + b[j])`` with
``W: (D, h)`` (the official ``Linear(D, h)``; the paper's per-head ``w`` as a block-diagonal ``(D, h)``), a masked,
max-subtracted softmax over n, and a pooled vector per head. Heads are handled inside a program through a one-hot
``(H_PAD, D_PAD)`` head-membership matrix: ``dot(e, onehot)`` / ``sum(v[:, None] * onehot, 0)``
expand per-head values to columns, ``dot(y, onehot^T)`` sums columns into heads.

Grid of every kernel: ``(B, S)``; program ``(b, s)`` owns rows ``[s * PER, min((s + 1) * PER, N))`` of batch row b in
blocks of ``BLOCK_N``. The forward pooling kernels write per-program online-softmax partials ``(m, l, acc)``; the next
kernel merges its batch row's S partials in its prologue (no separate combine launch). Forward = 3 launches
(pool q; pool p = k * q_glob; u = k_glob * q -- or, on the folded output path, a (B, 1) grid that only merges
k_glob), backward = 3 (dkg = sum dU * q; dk and dq_glob; dq -- 2 on the folded path, which gets d k_glob from the GEMM).
Dot operands are cast to ``DOT`` (fp32, bf16 or fp16; launch.py decides) with fp32 accumulation.
"""
from __future__ import annotations

import triton
import triton.language as tl

# float32 min at padded tokens: exp(NEG - max) = 0, and uniform weights if a row is all padding
NEG = tl.constexpr(-3.4028234663852886e38)


@triton.jit
def _onehot(D: tl.constexpr, DH: tl.constexpr, D_PAD: tl.constexpr, H_PAD: tl.constexpr):
    d = tl.arange(0, D_PAD)
    j = tl.arange(0, H_PAD)
    return tl.where(((d[None, :] // DH) == j[:, None]) & (d[None, :] < D), 1.0, 0.0)  # (H_PAD, D_PAD) fp32


@triton.jit
def _load_w(w_ptr, b_ptr, D: tl.constexpr, H: tl.constexpr, D_PAD: tl.constexpr, H_PAD: tl.constexpr,
            HAS_BIAS: tl.constexpr):
    d = tl.arange(0, D_PAD)
    j = tl.arange(0, H_PAD)
    w = tl.load(w_ptr + d[:, None] * H + j[None, :], mask=(d[:, None] < D) & (j[None, :] < H), other=0.0)
    if HAS_BIAS:
        bias = tl.load(b_ptr + j, mask=j < H, other=0.0).to(tl.float32)
    else:
        bias = tl.zeros([H_PAD], tl.float32)
    return w.to(tl.float32), bias  # (D_PAD, H_PAD), (H_PAD,)


@triton.jit
def _setup_rows(b, s, N, PER, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """program (b, s): first block's rows (BN,), its row limit, element offsets (BN, D_PAD), column mask, #blocks.
    (Hot loops call no helpers and advance rows/offsets themselves: the interpreter pays per helper call.)"""
    d = tl.arange(0, D_PAD)
    rows = s * PER + tl.arange(0, BLOCK_N)
    end = tl.minimum(s * PER + PER, N)
    offs = (b * N + rows).to(tl.int64)[:, None] * D + d[None, :]
    return rows, end, offs, d < D, tl.cdiv(end - s * PER, BLOCK_N)


@triton.jit
def _combine(m_ptr, l_ptr, acc_ptr, b, S, onehot, H_PAD: tl.constexpr, D_PAD: tl.constexpr):
    """merge the S online-softmax partials of batch row b -> pooled vector (D_PAD,), max M and sum L (H_PAD,)."""
    j = tl.arange(0, H_PAD)
    d = tl.arange(0, D_PAD)
    M = tl.full([H_PAD], float("-inf"), tl.float32)
    for s in range(S):
        M = tl.maximum(M, tl.load(m_ptr + (b * S + s) * H_PAD + j))
    L = tl.zeros([H_PAD], tl.float32)
    acc = tl.zeros([D_PAD], tl.float32)
    for s in range(S):
        f = tl.exp(tl.load(m_ptr + (b * S + s) * H_PAD + j) - M)
        L += f * tl.load(l_ptr + (b * S + s) * H_PAD + j)
        acc += tl.sum(f[:, None] * onehot, axis=0) * tl.load(acc_ptr + (b * S + s) * D_PAD + d)
    Ld = tl.sum(L[:, None] * onehot, axis=0)  # per-head sums spread over columns (D_PAD,)
    return acc / tl.where(Ld > 0, Ld, 1.0), M, L


@triton.jit
def _pool_fwd(x_ptr, w_ptr, b_ptr, mask_ptr, pm_ptr, pl_ptr, pacc_ptr,  # in: tokens, scores, mask, gate partials
              om_ptr, ol_ptr, oacc_ptr, glob_ptr, stats_ptr,  # out: partials; merged gate vector + stats
              N, S, PER, scale, D: tl.constexpr, H: tl.constexpr, DH: tl.constexpr, D_PAD: tl.constexpr,
              H_PAD: tl.constexpr, BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr,
              GATE: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    """Online-softmax pooling of x (GATE=False: x = q) or of p = k * g (GATE=True: g merged from the q partials)."""
    b = tl.program_id(0)
    s = tl.program_id(1)
    j = tl.arange(0, H_PAD)
    d = tl.arange(0, D_PAD)
    onehot = _onehot(D, DH, D_PAD, H_PAD)
    w, bias = _load_w(w_ptr, b_ptr, D, H, D_PAD, H_PAD, HAS_BIAS)
    w_d, oh_d = w.to(DOT), onehot.to(DOT)  # dot operands: fp32 (ieee) for fp32 inputs, else the input dtype
    g = tl.zeros([D_PAD], tl.float32)
    if GATE:
        g, M, L = _combine(pm_ptr, pl_ptr, pacc_ptr, b, S, onehot, H_PAD, D_PAD)
        if s == 0:  # merged global query + its softmax stats, saved for backward
            tl.store(glob_ptr + b * D_PAD + d, g)
            tl.store(stats_ptr + b * 2 * H_PAD + j, M)
            tl.store(stats_ptr + b * 2 * H_PAD + H_PAD + j, L)
    m_i = tl.full([H_PAD], float("-inf"), tl.float32)
    l_i = tl.zeros([H_PAD], tl.float32)
    acc = tl.zeros([D_PAD], tl.float32)
    rows, end, offs, dmask, n_blocks = _setup_rows(b, s, N, PER, D, D_PAD, BLOCK_N)
    for _ in range(n_blocks):
        valid = rows < end
        real = valid
        if HAS_MASK:
            real = valid & (tl.load(mask_ptr + b * N + rows, mask=valid, other=0) != 0)
        x = tl.load(x_ptr + offs, mask=valid[:, None] & dmask[None, :], other=0.0).to(tl.float32)  # (BN, D_PAD)
        if GATE:
            x = x * g[None, :]  # p = k (.) q_glob
        sc = (tl.dot(x.to(DOT), w_d, input_precision=PREC) + bias[None, :]) * scale  # scores (BN, H_PAD)
        sc = tl.where(valid[:, None], tl.where(real[:, None], sc, NEG), float("-inf"))
        m_new = tl.maximum(m_i, tl.max(sc, axis=0))
        corr = tl.exp(m_i - m_new)
        e = tl.exp(sc - m_new[None, :])  # (BN, H_PAD)
        l_i = l_i * corr + tl.sum(e, axis=0)
        acc = acc * tl.sum(corr[:, None] * onehot, axis=0) \
            + tl.sum(tl.dot(e.to(DOT), oh_d, input_precision=PREC) * x, axis=0)
        m_i = m_new
        rows += BLOCK_N
        offs += BLOCK_N * D
    tl.store(om_ptr + (b * S + s) * H_PAD + j, m_i)
    tl.store(ol_ptr + (b * S + s) * H_PAD + j, l_i)
    tl.store(oacc_ptr + (b * S + s) * D_PAD + d, acc)


@triton.jit
def _gate_fwd(q_ptr, u_ptr, pm_ptr, pl_ptr, pacc_ptr, glob_ptr, stats_ptr, N, S, PER,
              D: tl.constexpr, DH: tl.constexpr, D_PAD: tl.constexpr, H_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
              WRITE_U: tl.constexpr):
    """u = k_glob (.) q, with k_glob merged from the p-pooling partials (and saved with its stats).
    WRITE_U=False (grid (B, 1)): only merge and save k_glob (the folded output GEMM applies it)."""
    b = tl.program_id(0)
    s = tl.program_id(1)
    j = tl.arange(0, H_PAD)
    d = tl.arange(0, D_PAD)
    g, M, L = _combine(pm_ptr, pl_ptr, pacc_ptr, b, S, _onehot(D, DH, D_PAD, H_PAD), H_PAD, D_PAD)
    if s == 0:
        tl.store(glob_ptr + b * D_PAD + d, g)
        tl.store(stats_ptr + b * 2 * H_PAD + j, M)
        tl.store(stats_ptr + b * 2 * H_PAD + H_PAD + j, L)
    if WRITE_U:
        rows, end, offs, dmask, n_blocks = _setup_rows(b, s, N, PER, D, D_PAD, BLOCK_N)
        for _ in range(n_blocks):
            ld = (rows < end)[:, None] & dmask[None, :]
            q = tl.load(q_ptr + offs, mask=ld, other=0.0).to(tl.float32)  # (BN, D_PAD)
            tl.store(u_ptr + offs, (q * g[None, :]).to(u_ptr.dtype.element_ty), mask=ld)
            rows += BLOCK_N
            offs += BLOCK_N * D


@triton.jit
def _dot_rows_bwd(a_ptr, c_ptr, out_ptr, N, S, PER, D: tl.constexpr, D_PAD: tl.constexpr, BLOCK_N: tl.constexpr):
    """partial sum over the program's rows of a (.) c -> (D_PAD,): dk_glob = sum_n dU_n (.) q_n."""
    b = tl.program_id(0)
    s = tl.program_id(1)
    d = tl.arange(0, D_PAD)
    acc = tl.zeros([D_PAD], tl.float32)
    rows, end, offs, dmask, n_blocks = _setup_rows(b, s, N, PER, D, D_PAD, BLOCK_N)
    for _ in range(n_blocks):
        ld = (rows < end)[:, None] & dmask[None, :]
        a = tl.load(a_ptr + offs, mask=ld, other=0.0).to(tl.float32)  # (BN, D_PAD)
        c = tl.load(c_ptr + offs, mask=ld, other=0.0).to(tl.float32)
        acc += tl.sum(a * c, axis=0)
        rows += BLOCK_N
        offs += BLOCK_N * D
    tl.store(out_ptr + (b * S + s) * D_PAD + d, acc)


@triton.jit
def _pool_bwd(x_ptr, dx_ptr, du_ptr, w_ptr, b_ptr, mask_ptr, gate_ptr, glob_ptr, stats_ptr, dglob_part_ptr,
              side_ptr, dgate_part_ptr, dw_part_ptr, db_part_ptr, N, S, PER, NPART, scale,
              D: tl.constexpr, H: tl.constexpr, DH: tl.constexpr, D_PAD: tl.constexpr, H_PAD: tl.constexpr,
              BLOCK_N: tl.constexpr, HAS_MASK: tl.constexpr, HAS_BIAS: tl.constexpr, GATE: tl.constexpr,
              SIDE: tl.constexpr, PREC: tl.constexpr, DOT: tl.constexpr):
    """Backward of g = sum_n softmax_n(scale * (y_n W + b)) y_n with y = x (.) gate (GATE) or y = x.

    dg is the sum of the NPART partials at ``dglob_part_ptr``. Writes dx: GATE: dy (.) gate (dk) and the partial
    of d gate = sum_n dy (.) x; else dy, plus dU (.) side with SIDE (dq of u = k_glob (.) q, side = k_glob).
    Always the partials of dW, db.
    """
    b = tl.program_id(0)
    s = tl.program_id(1)
    j = tl.arange(0, H_PAD)
    d = tl.arange(0, D_PAD)
    onehot = _onehot(D, DH, D_PAD, H_PAD)
    w, bias = _load_w(w_ptr, b_ptr, D, H, D_PAD, H_PAD, HAS_BIAS)
    w_d, oh_d = w.to(DOT), onehot.to(DOT)  # dot operands: fp32 (ieee) for fp32 inputs, else the input dtype
    w_t, oh_t = tl.trans(w_d), tl.trans(oh_d)
    dg = tl.zeros([D_PAD], tl.float32)
    for t in range(NPART):
        dg += tl.load(dglob_part_ptr + (b * NPART + t) * D_PAD + d)
    g = tl.load(glob_ptr + b * D_PAD + d)
    M = tl.load(stats_ptr + b * 2 * H_PAD + j)
    L = tl.load(stats_ptr + b * 2 * H_PAD + H_PAD + j)
    c = tl.sum(onehot * (dg * g)[None, :], axis=1)  # sum_n w_n <dg, y_n>_head = <dg, g>_head, (H_PAD,)
    gate = tl.zeros([D_PAD], tl.float32)
    side = tl.zeros([D_PAD], tl.float32)
    if GATE:
        gate = tl.load(gate_ptr + b * D_PAD + d)
    elif SIDE:
        side = tl.load(side_ptr + b * D_PAD + d)
    dgate = tl.zeros([D_PAD], tl.float32)
    dw = tl.zeros([D_PAD, H_PAD], tl.float32)
    db = tl.zeros([H_PAD], tl.float32)
    rows, end, offs, dmask, n_blocks = _setup_rows(b, s, N, PER, D, D_PAD, BLOCK_N)
    for _ in range(n_blocks):
        valid = rows < end
        real = valid
        if HAS_MASK:
            real = valid & (tl.load(mask_ptr + b * N + rows, mask=valid, other=0) != 0)
        ld = valid[:, None] & dmask[None, :]
        x = tl.load(x_ptr + offs, mask=ld, other=0.0).to(tl.float32)  # (BN, D_PAD)
        y = x
        if GATE:
            y = x * gate[None, :]
        sc = (tl.dot(y.to(DOT), w_d, input_precision=PREC) + bias[None, :]) * scale  # scores (BN, H_PAD)
        sc = tl.where(valid[:, None], tl.where(real[:, None], sc, NEG), float("-inf"))
        a = tl.exp(sc - M[None, :]) / L[None, :]  # softmax weights (BN, H_PAD)
        da = tl.dot((y * dg[None, :]).to(DOT), oh_t, input_precision=PREC)  # <dg, y_n>_head
        ds = tl.where(real[:, None], a * (da - c[None, :]), 0.0)  # d scores (before scale); padding: constant
        ds_s = (ds * scale).to(DOT)  # d of the pre-scale scores
        dy = tl.dot(ds_s, w_t, tl.dot(a.to(DOT), oh_d, input_precision=PREC) * dg[None, :],
                    input_precision=PREC)  # (BN, D_PAD): accumulated into the first product's registers
        dw = tl.dot(tl.trans(y).to(DOT), ds_s, dw, input_precision=PREC)  # in-place accumulator
        db += scale * tl.sum(ds, axis=0)
        if GATE:
            dgate += tl.sum(dy * x, axis=0)
            dx = dy * gate[None, :]
        elif SIDE:
            du = tl.load(du_ptr + offs, mask=ld, other=0.0).to(tl.float32)
            dx = dy + du * side[None, :]
        else:
            dx = dy
        tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=ld)
        rows += BLOCK_N
        offs += BLOCK_N * D
    if GATE:
        tl.store(dgate_part_ptr + (b * S + s) * D_PAD + d, dgate)
    tl.store(dw_part_ptr + ((b * S + s) * D_PAD + d[:, None]) * H_PAD + j[None, :], dw)
    tl.store(db_part_ptr + (b * S + s) * H_PAD + j, db)
