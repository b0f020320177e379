"""Longformer attention (Beltagy et al. 2020, arXiv 2004.05150): sliding window + global tokens, O(N (w + g) d).

Pattern, for a row with real-token mask ``m`` and ``g = min(n_global, N)``:

* ``window`` is the **total** span ``w`` of the Longformer paper (§3.1 "each token attends to w/2 tokens on each side")
  and of transformers' ``LongformerConfig.attention_window``; it must be even. Token i attends to the real keys j with
  ``|i - j| <= window // 2`` (``window + 1`` keys including itself). Table 8's "Window (Longformer) 8/16/64" is read as
  this ``w`` (= HF ``attention_window``): Window 8 means ±4 neighbours.
* the first ``g`` real positions are global (Table 8 "# Global tokens"): every token also attends to them, and their
  own rows attend to every real token.
* projections as in the published implementation (transformers ``LongformerSelfAttention``): ordinary rows use
  ``query/key/value`` for both their window keys and the global keys; the global tokens' rows use the separate
  ``query_global/key_global/value_global`` over all tokens. A final ``out`` Linear (HF's ``LongformerSelfOutput.dense``)
  maps the heads back to ``d_model``.

``impl="fast"`` (default): blocked sliding window in plain PyTorch -- queries in chunks of ``C`` positions; each
chunk attends to the ``ceil((C + w) / C)`` key chunks that cover its window plus the ``g`` global keys, all through one
``F.scaled_dot_product_attention`` call (chunks folded into the batch) with a band mask: O(N (C + w + g)) memory and
time. The key windows are gathered with ``roll`` + ``cat`` whose backward is cheap (``unfold``/slicing backward
zero-fills full-size buffers, measured 2x slower on CPU).
``impl="hf"``: transformers' ``LongformerSelfAttention`` itself, fed with its own conventions (padding to a multiple of
``window``, the -/0/+ attention mask, ``is_index_*`` tensors). Both impls own the same parameters under the same names,
so a state dict from one loads into the other with ``strict=True``.

``causal=True`` (the autoregressive setting of the paper's character LM, §4: sliding windows only, no global
attention): the bidirectional band with its future half removed -- token i attends to the real keys
``i - window // 2 .. i`` (``window // 2`` previous positions and itself), as the allenai implementation's
``autoregressive`` mode attends to its one-sided ``attention_window`` previous positions (HF's ``attention_window`` =
our ``window`` is twice that). So ``window`` keeps its meaning (total span of the bidirectional band) and a causal
layer sees exactly the past part of it; for ``w`` previous positions set ``window = 2 w``. Requires ``n_global=0``
(the mixer's default 8 is the bidirectional Table 8 setting; a ValueError says so) and ``impl="fast"``. ``step`` keeps
a rolling cache of the last ``window // 2`` keys and values.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fastformer.mixers.base import TokenMixer, register_mixer

#: ``chunked_band_attention`` attends densely (band-masked) when the whole key sequence is at most this many times the
#: per-chunk key window; tests set it to 0 to force the chunked path.
DENSE_FACTOR = 2.0


def _pad_dim(t: torch.Tensor, dim: int, left: int, right: int, value=0) -> torch.Tensor:
    """Pad (or, for a negative ``right``, trim) ``t`` along ``dim``."""
    if right < 0:
        t = t.narrow(dim, 0, t.shape[dim] + right)
        right = 0
    pad = [0, 0] * (t.dim() - 1 - dim % t.dim()) + [left, right]
    return F.pad(t, pad, value=value)


def _rolled_windows(t: torch.Tensor, n_chunks: int, step: int, shifts: list[int],
                    prefix: torch.Tensor | None = None) -> torch.Tensor:
    """(B, n_chunks*step, ...) -> (B, n_chunks, [G +] len(shifts)*step, ...): piece j of window c holds rows
    c*step + shifts[j] + [0, step), taken cyclically, after the optional ``prefix`` (B, n_chunks, G, ...). Built with
    ``roll`` + one ``cat`` (backward = roll + views), avoiding the zero-fill of slice/unfold backward; the caller
    masks the wrapped-around rows."""
    pieces = [(torch.roll(t, -sh, dims=1) if sh else t).view(t.shape[0], n_chunks, step, *t.shape[2:])
              for sh in shifts]  # each (B, nC, step, ...)
    return torch.cat(([prefix] if prefix is not None else []) + pieces, dim=2)


def chunked_band_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_mask: torch.Tensor, *,
                           chunk: int, key_step: int, key_left: int, key_len: int, allow,
                           extra_k: torch.Tensor | None = None, extra_v: torch.Tensor | None = None,
                           extra_mask: torch.Tensor | None = None, dropout: float = 0.0) -> torch.Tensor:
    """Banded attention in query chunks. Query chunk c (positions c*chunk + r) may see keys with index in
    ``c*key_step - key_left + [0, key_len)`` for which ``allow(query_pos, key_index)`` (broadcasting int tensors) and
    ``key_mask`` hold, plus (optionally) ``G`` extra keys seen by every query.

    q: (B, N, h, dh); k, v: (B, M, h, dh) with M <= ceil(N / chunk) * key_step; key_mask: (B, M) bool;
    extra_k, extra_v: (B, G, h, dh), extra_mask: (B, G) bool.  Returns (B, N, h, dh).
    One 4-D ``F.scaled_dot_product_attention`` call with the chunks folded into the batch (fused CPU/GPU kernels).
    Query rows with no allowed key (only possible at padded positions) get a finite, unspecified output.
    """
    B, N, h, dh = q.shape
    C, s = chunk, key_step
    n_chunks = -(-N // C)
    Mp = n_chunks * s
    shifts = [-key_left + j * s for j in range(-(-key_len // s))]  # consecutive pieces covering the key range
    if k.shape[1] <= DENSE_FACTOR * len(shifts) * s:  # few keys in all (short input): one dense call is cheaper
        return _dense_band_attention(q, k, v, key_mask, allow, extra_k, extra_v, extra_mask, dropout)
    qc = _pad_dim(q, 1, 0, n_chunks * C - N).view(B * n_chunks, C, h, dh).transpose(1, 2)  # (B*nC, h, C, dh)
    has_extra = extra_k is not None and extra_k.shape[1] > 0
    G = extra_k.shape[1] if has_extra else 0
    ek = extra_k[:, None].expand(B, n_chunks, G, h, dh) if has_extra else None  # (B, nC, G, h, dh)
    ev = extra_v[:, None].expand(B, n_chunks, G, h, dh) if has_extra else None
    kw = _rolled_windows(_pad_dim(k, 1, 0, Mp - k.shape[1]), n_chunks, s, shifts, ek)  # (B, nC, G+S, h, dh)
    vw = _rolled_windows(_pad_dim(v, 1, 0, Mp - v.shape[1]), n_chunks, s, shifts, ev)  # (B, nC, G+S, h, dh)
    mw = _rolled_windows(_pad_dim(key_mask, 1, 0, Mp - key_mask.shape[1], value=False), n_chunks, s, shifts)
    dev = q.device
    kpos = _rolled_windows(torch.arange(Mp, device=dev)[None], n_chunks, s, shifts)[0]  # (nC, S) actual key index
    want = (torch.arange(n_chunks, device=dev)[:, None] * s + torch.tensor(shifts, device=dev)[:, None]
            .add(torch.arange(s, device=dev)).reshape(1, -1))  # (nC, S) intended index (no wrap-around)
    qpos = torch.arange(n_chunks * C, device=dev).view(n_chunks, C, 1)  # (nC, C, 1)
    band = allow(qpos, kpos[:, None, :]) & (kpos == want)[:, None, :]  # (nC, C, S)
    allowed = band[None] & mw[:, :, None, :]  # (B, nC, C, S)
    if has_extra:
        allowed = torch.cat([extra_mask[:, None, None, :].expand(B, n_chunks, C, G), allowed], dim=3)
    S = kw.shape[2]
    # rows with nothing allowed (padding only) would give NaN: let them see their whole window instead
    allowed = allowed | ~allowed.any(-1, keepdim=True)  # (B, nC, C, S)
    y = F.scaled_dot_product_attention(qc, kw.reshape(B * n_chunks, S, h, dh).transpose(1, 2),
                                       vw.reshape(B * n_chunks, S, h, dh).transpose(1, 2),
                                       attn_mask=allowed.view(B * n_chunks, 1, C, S), dropout_p=dropout)
    y = y.transpose(1, 2).reshape(B, n_chunks * C, h, dh)  # (B, nC*C, h, dh)
    return y if n_chunks * C == N else y[:, :N]  # (B, N, h, dh)


def _dense_band_attention(q, k, v, key_mask, allow, extra_k, extra_v, extra_mask, dropout):
    """Same result as ``chunked_band_attention`` with all M keys per query: (B, N, h, dh) -> (B, N, h, dh)."""
    N, M = q.shape[1], k.shape[1]
    allowed = allow(torch.arange(N, device=q.device)[:, None], torch.arange(M, device=q.device)[None, :])  # (N, M)
    allowed = allowed[None] & key_mask[:, None, :]  # (B, N, M)
    if extra_k is not None and extra_k.shape[1] > 0:
        k, v = torch.cat([extra_k, k], dim=1), torch.cat([extra_v, v], dim=1)  # (B, G+M, h, dh)
        allowed = torch.cat([extra_mask[:, None, :].expand(-1, N, -1), allowed], dim=2)  # (B, N, G+M)
    allowed = allowed | ~allowed.any(-1, keepdim=True)  # padding-only rows: finite, unspecified
    y = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2),
                                       attn_mask=allowed[:, None], dropout_p=dropout)  # (B, h, N, dh)
    return y.transpose(1, 2)


def default_chunk(one_sided: int) -> int:
    """Query chunk size C: the window then spans ceil((C + 2w) / C) chunk-sized pieces, i.e. 3w keys per query for
    C = w; at least 16 so that tiny windows still give the fused kernel reasonably sized blocks."""
    return max(16, one_sided)


@register_mixer("longformer")
class Longformer(TokenMixer):
    """Sliding-window + global attention. Options (keyword-only):

    window    total sliding-window span w (even); each token sees ±w/2 neighbours (Table 8 "Window",
              HF attention_window)
    n_global  number of leading positions with global attention (Table 8 "# Global tokens"); 0 = window only
    dropout   attention-probability dropout
    impl      "fast" (chunked SDPA, plain PyTorch) | "hf" (transformers' LongformerSelfAttention); same parameters
    chunk     query chunk size of the fast impl (None: max(16, window // 2)); changes speed, not results
    max_len   accepted for the encoder contract, unused (any length works)
    causal    token i sees the real keys i - window // 2 .. i only (needs n_global=0, impl="fast"); adds ``step``
    """

    def __init__(self, d_model: int, n_heads: int, *, window: int = 8, n_global: int = 8, dropout: float = 0.0,
                 impl: str = "fast", chunk: int | None = None, max_len: int | None = None, causal: bool = False):
        super().__init__(d_model, n_heads)
        self.causal = bool(causal)
        if causal and n_global:
            raise ValueError(f"longformer causal=True has no global tokens (n_global={n_global}): set n_global=0 "
                             "(e.g. model.mixer.n_global=0, or n_global: 0 in model.decoder_mixer)")
        if causal and impl != "fast":
            raise ValueError(f"longformer causal=True needs impl='fast' (got {impl!r}; transformers' "
                             "LongformerSelfAttention has no causal form)")
        if window < 2 or window % 2:
            raise ValueError(f"longformer option window={window} must be an even total span >= 2 (±window/2 each side)")
        if n_global < 0:
            raise ValueError(f"longformer option n_global={n_global} must be >= 0")
        if impl not in ("fast", "hf"):
            raise ValueError(f"longformer option impl={impl!r} is not one of ['fast', 'hf']")
        if chunk is not None and chunk < 1:
            raise ValueError(f"longformer option chunk={chunk} must be >= 1 (or null for the default)")
        self.window, self.one_sided, self.n_global, self.impl = window, window // 2, n_global, impl
        self.chunk = chunk or default_chunk(self.one_sided)
        self.attn_dropout = dropout
        self.query, self.key, self.value = (nn.Linear(d_model, d_model) for _ in range(3))
        if n_global > 0:  # only built when used, so that every parameter receives a gradient
            self.query_global, self.key_global, self.value_global = (nn.Linear(d_model, d_model) for _ in range(3))
        self.out = nn.Linear(d_model, d_model)
        if impl == "hf":
            self.__dict__["_hf"] = self._build_hf(d_model, n_heads, window, dropout)  # not a registered submodule

    # ----------------------------------------------------------------------------------------------- fast impl
    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, N, h, dh)
        return t.view(t.shape[0], t.shape[1], self.n_heads, self.d_head)

    def _fast(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        g = min(self.n_global, N)
        p = self.attn_dropout if self.training else 0.0
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))  # (B, N, h, dh)
        pos = torch.arange(N, device=x.device)
        window_keys = real & (pos >= g)[None]  # (B, N): global keys are attended through the extra slots instead
        w = self.one_sided
        y = chunked_band_attention(q, k, v, window_keys, chunk=self.chunk, key_step=self.chunk, key_left=w,
                                   key_len=self.chunk + 2 * w, allow=lambda qp, kp: (qp - kp).abs() <= w,
                                   extra_k=k[:, :g], extra_v=v[:, :g], extra_mask=real[:, :g],
                                   dropout=p)  # (B, N, h, dh)
        if g > 0:
            qg = self._heads(self.query_global(x[:, :g])).transpose(1, 2)  # (B, h, g, dh)
            kg = self._heads(self.key_global(x)).transpose(1, 2)  # (B, h, N, dh)
            vg = self._heads(self.value_global(x)).transpose(1, 2)  # (B, h, N, dh)
            yg = F.scaled_dot_product_attention(qg, kg, vg, attn_mask=real[:, None, None, :],
                                                dropout_p=p)  # (B, h, g, dh)
            y = torch.cat([yg.transpose(1, 2), y[:, g:]], dim=1)  # global rows replace their local rows
        return self.out(y.reshape(B, N, D))

    def _causal_fast(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))  # (B, N, h, dh)
        w = self.one_sided
        y = chunked_band_attention(q, k, v, real, chunk=self.chunk, key_step=self.chunk, key_left=w,
                                   key_len=self.chunk + w, allow=lambda qp, kp: (kp <= qp) & (qp - kp <= w),
                                   dropout=self.attn_dropout if self.training else 0.0)  # (B, N, h, dh)
        return self.out(y.reshape(B, N, D))

    def step(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Causal incremental step: state ``{"k", "v"}`` (B, past, h, dh), the last ``past <= window // 2`` positions'
        keys and values. ``x`` is taken ``chunk`` positions at a time, so a long piece costs O(t (chunk + w))."""
        if not self.causal:
            return super().step(x, state)
        B, t, D = x.shape
        w, p = self.one_sided, self.attn_dropout if self.training else 0.0
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))  # (B, t, h, dh)
        kc = state["k"] if state else k[:, :0]
        vc = state["v"] if state else v[:, :0]
        ys = []
        for a in range(0, t, self.chunk):
            past = kc.shape[1]
            kc, vc = torch.cat([kc, k[:, a:a + self.chunk]], 1), torch.cat([vc, v[:, a:a + self.chunk]], 1)
            qa = q[:, a:a + self.chunk]  # (B, C, h, dh) at positions past + r of the keys kc (B, past + C, h, dh)
            qpos = past + torch.arange(qa.shape[1], device=x.device)[:, None]
            kpos = torch.arange(kc.shape[1], device=x.device)[None, :]
            allowed = (kpos <= qpos) & (qpos - kpos <= w)  # (C, past + C)
            ya = F.scaled_dot_product_attention(qa.transpose(1, 2), kc.transpose(1, 2), vc.transpose(1, 2),
                                                attn_mask=allowed, dropout_p=p)  # (B, h, C, dh)
            ys.append(ya.transpose(1, 2))
            kc, vc = kc[:, -w:], vc[:, -w:]  # the rolling cache: the last w positions
        y = torch.cat(ys, 1) if ys else q  # (B, t, h, dh)
        return self.out(y.reshape(B, t, D)), {"k": kc, "v": vc}

    # ------------------------------------------------------------------------------------------------- hf impl
    def _build_hf(self, d_model: int, n_heads: int, window: int, dropout: float) -> nn.Module:
        from transformers import LongformerConfig
        from transformers.models.longformer.modeling_longformer import LongformerSelfAttention

        cfg = LongformerConfig(hidden_size=d_model, num_attention_heads=n_heads, attention_window=[window],
                               attention_probs_dropout_prob=dropout)
        hf = LongformerSelfAttention(cfg, layer_id=0)
        names = ("query", "key", "value") + (("query_global", "key_global", "value_global") if self.n_global else ())
        for name in names:  # the HF module computes with *our* Linear layers (shared objects, one set of parameters)
            setattr(hf, name, getattr(self, name))
        return hf

    def _hf_forward(self, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        hf = self._hf.train(self.training)
        n_pad = (-N) % self.window  # HF needs a length that is a multiple of attention_window
        xp = F.pad(x, (0, 0, 0, n_pad))  # (B, Np, D)
        realp = F.pad(real, (0, n_pad), value=False)  # (B, Np)
        is_global = realp & (torch.arange(N + n_pad, device=x.device) < self.n_global)[None]  # (B, Np)
        # HF convention: < 0 no attention (padding), 0 local attention, > 0 global attention
        att = torch.zeros(realp.shape, dtype=x.dtype, device=x.device)
        att = att.masked_fill(~realp, -10000.0).masked_fill(is_global, 10000.0)
        y = hf(xp, attention_mask=att, is_index_masked=~realp, is_index_global_attn=is_global,
               is_global_attn=bool(is_global.any()))[0]  # (B, Np, D)
        return self.out(y[:, :N])

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        real = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device) if mask is None else mask.bool()
        if self.causal:
            return self._causal_fast(x, real)
        return self._hf_forward(x, real) if self.impl == "hf" else self._fast(x, real)

    def extra_repr(self) -> str:
        if self.causal:
            return f"window={self.window} (causal: {self.one_sided} previous), n_global=0, impl={self.impl!r}"
        return f"window={self.window} (±{self.one_sided}), n_global={self.n_global}, impl={self.impl!r}"
