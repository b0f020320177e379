"""The token-mixer contract and registry.

Every sequence mixer in this repository (Fastformer and all baselines) is a ``TokenMixer``:

* constructor ``Mixer(d_model: int, n_heads: int, *, dropout: float = 0.0, max_len: int | None = None, **kw)``
  -- all mixer-specific options are keyword-only and documented on the class;
* ``forward(x: (B, N, D) float, mask: (B, N) bool | None) -> (B, N, D)``, where ``mask[b, i]`` is True for a real token
  and ``None`` means every token is real. Outputs at real positions never depend on the content of padded positions;
  outputs at padded positions are unspecified (but finite).

Mixers register themselves with ``@register_mixer("name")``; ``build_mixer("name", d_model=..., n_heads=..., **kw)``
builds one and fails with the list of valid names / keyword arguments when given something unknown.

Causal forms (decoders, causal language models). A mixer that has one takes the keyword ``causal: bool = False``;
``build_mixer(name, causal=True)`` on a mixer without one raises a one-line error naming the mixers that have one
(``causal_mixers()``). With ``causal=True``:

* ``forward(x, mask)``: output ``i`` depends only on real positions ``j <= i`` (padding anywhere, left or right, is
  skipped as in the bidirectional form);
* ``step(x_new: (B, t, D), state | None) -> (y_new: (B, t, D), state)``: incremental decoding. ``state`` is this
  layer's summary of every earlier position (``None`` = nothing seen yet; all positions fed to ``step`` are real);
  feeding a sequence in pieces of any sizes gives the outputs of one ``forward`` over the whole of it. The state is a
  dict (nested dicts / tuples) of tensors whose first dimension is the batch (beam search reorders it row-wise).

The additive mixers (Fastformer, the pooling baseline) pool with :func:`prefix_softmax_pool`: a softmax-weighted sum
over each prefix, computed chunk by chunk with a running max, O(N * chunk * d) time (linear in N) and a constant-size
state (max, weighted sum, normaliser) per head.

Causal forms and their states: ``transformer`` (key/value cache), ``linear_transformer`` (prefix sums [S | z]),
``performer`` (unidirectional FAVOR+ with the same random features: [S | z] per head under a running max,
chunked scan), ``longformer`` (the band's past half, i - window // 2 .. i, no global tokens; a rolling cache of the
last window // 2 keys/values), ``fastformer`` and ``pooling_baseline`` (the prefix pool above). No causal form:

* ``bigbird``: global and random key blocks reach across the whole sequence; its paper uses the sparse pattern in
  encoders only (summarisation: sparse encoder, full-attention decoder);
* ``linformer``: E/F project keys/values along the sequence axis, so every projected key mixes all positions,
  later ones included; its paper gives no causal form;
* ``poolingformer``: its second level pools buckets that hold later tokens; its paper defines it for long-document
  encoders only.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
from torch import nn

MIXERS: dict[str, type[TokenMixer]] = {}


class TokenMixer(nn.Module):
    """Base class: maps ``x: (B, N, D)`` with ``mask: (B, N)`` bool (True = real token) to ``(B, N, D)``."""

    #: set by mixers whose parameters the encoder should share across layers (Fastformer's layer-wise sharing)
    share_across_layers: bool = False

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        if d_model % n_heads != 0:
            raise ValueError(f"d_model={d_model} must be divisible by n_heads={n_heads}")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads

    #: True once built with ``causal=True`` (mixers with a causal form set it in their constructor)
    causal: bool = False

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def step(self, x: torch.Tensor, state: dict | None = None) -> tuple[torch.Tensor, dict]:
        """Incremental decoding (causal mixers only): ``x`` (B, t, D) the next ``t`` real positions -> their outputs
        (B, t, D) and the updated state (see the module docstring)."""
        raise NotImplementedError(f"mixer {type(self).__name__} has no incremental step"
                                  + ("" if self.causal else "; build it with causal=True"))


def register_mixer(name: str) -> Callable[[type[TokenMixer]], type[TokenMixer]]:
    """Class decorator adding a ``TokenMixer`` subclass to ``MIXERS`` under ``name``."""

    def deco(cls: type[TokenMixer]) -> type[TokenMixer]:
        if name in MIXERS and MIXERS[name] is not cls:
            raise ValueError(f"mixer name {name!r} registered twice ({MIXERS[name].__name__}, {cls.__name__})")
        if not issubclass(cls, TokenMixer):
            raise TypeError(f"{cls.__name__} must subclass TokenMixer")
        cls.mixer_name = name
        MIXERS[name] = cls
        return cls

    return deco


def mixer_kwargs(name: str) -> list[str]:
    """Keyword arguments accepted by mixer ``name`` (besides d_model, n_heads)."""
    params = inspect.signature(MIXERS[name].__init__).parameters
    return [p for p in params if p not in ("self", "d_model", "n_heads")
            and params[p].kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)]


def causal_mixers() -> list[str]:
    """Names of the registered mixers that have a causal form (a ``causal`` constructor option)."""
    return sorted(n for n in MIXERS if "causal" in mixer_kwargs(n))


def build_mixer(name: str, *, d_model: int, n_heads: int, **kwargs) -> TokenMixer:
    """Build the mixer registered as ``name``. Unknown names or keyword arguments raise with the valid ones."""
    if name not in MIXERS:
        raise KeyError(f"unknown mixer {name!r}; registered mixers: {', '.join(sorted(MIXERS))}")
    valid = mixer_kwargs(name)
    if "causal" in kwargs and "causal" not in valid:
        if kwargs["causal"]:
            raise ValueError(f"mixer {name!r} has no causal form; mixers with one: {', '.join(causal_mixers())}")
        kwargs = {k: v for k, v in kwargs.items() if k != "causal"}  # causal=False is every mixer's only form
    bad = sorted(set(kwargs) - set(valid))
    if bad:
        raise TypeError(f"mixer {name!r} got unknown option(s) {bad}; valid options: {valid}")
    return MIXERS[name](d_model, n_heads, **kwargs)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None, dim: int = -1) -> torch.Tensor:
    """Max-subtracted softmax over ``dim`` with ``mask`` (broadcastable bool, True = keep) -> probabilities.

    Computed in float32 (or float64) for stability; fully-masked rows give uniform weights rather than NaN.
    """
    work = scores.float() if scores.dtype in (torch.float16, torch.bfloat16) else scores
    if mask is not None:
        work = work.masked_fill(~mask, torch.finfo(work.dtype).min)
    return torch.softmax(work, dim=dim).to(scores.dtype)


def prefix_softmax_pool(scores: torch.Tensor, values: torch.Tensor, mask: torch.Tensor | None = None,
                        state: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None, *, chunk: int = 16
                        ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Causal softmax pooling: ``out_i = sum_{j <= i, real} softmax_j(scores_j) values_j`` for every position ``i``.

    scores (B, N, h), values (B, N, h, d), mask (B, N) bool (True = real) -> out (B, N, h, d) and the state after the
    last position, ``(m (B, h), num (B, h, d), den (B, h))``: the running max of the scores and the sums of
    ``exp(s_j - m)`` times values / times 1 over every position seen; ``state`` continues from an earlier call (the
    positions given then came before these). The sequence is processed in chunks of ``chunk`` positions: inside a
    chunk an explicit lower-triangular (chunk x chunk) weight block, across chunks the carried state, so time is
    O(N * chunk * d) and memory O(N * d + chunk^2 * h) -- linear in N. The reference point of each exponential is
    ``M_i = max(m, max_{j <= i} s_j)``, so every weight is <= 1 and the normaliser is >= 1 (no overflow, no 0/0);
    it is detached because the result does not depend on it. Padded positions get a score of the dtype's minimum:
    weight exactly 0 once a real position has been seen (a position before any real one pools the padded ones:
    finite, unspecified). Half-precision inputs are pooled in float32.
    """
    B, N, h = scores.shape
    dt = torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype
    s, v = scores.to(dt), values.to(dt)
    neg = torch.finfo(dt).min
    if mask is not None:
        s = s.masked_fill(~mask[:, :, None], neg)
    if state is None:
        m0 = s.new_full((B, h), neg)
        num0, den0 = v.new_zeros(B, h, v.shape[-1]), s.new_zeros(B, h)
    else:
        m0, num0, den0 = state
    s, v = s.transpose(1, 2), v.transpose(1, 2)  # (B, h, N), (B, h, N, d): heads batched for the matmuls
    outs = []
    for a in range(0, N, chunk):
        sc, vc = s[:, :, a:a + chunk], v[:, :, a:a + chunk]  # (B, h, C), (B, h, C, d)
        C = sc.shape[-1]
        M = torch.maximum(torch.cummax(sc, dim=-1).values, m0[..., None]).detach()  # (B, h, C): reference per i
        later = ~torch.ones(C, C, dtype=torch.bool, device=s.device).tril()  # (C_i, C_j): j > i
        w = torch.exp((sc[:, :, None, :] - M[..., None]).masked_fill(later, float("-inf")))  # (B, h, C_i, C_j)
        carry = torch.exp(m0[..., None] - M)  # (B, h, C) <= 1: rescales the earlier chunks' sums
        num = carry[..., None] * num0[:, :, None] + w @ vc  # (B, h, C, d)
        den = carry * den0[..., None] + w.sum(-1)  # (B, h, C) >= 1
        outs.append(num / den[..., None])
        m0, num0, den0 = M[..., -1], num[:, :, -1], den[..., -1]
    out = torch.cat(outs, dim=2).transpose(1, 2) if outs else values.new_zeros(values.shape, dtype=dt)
    return out.to(values.dtype), (m0, num0, den0)


def implementation_report(model: nn.Module) -> dict:
    """What the token mixers of ``model`` ran, for the run's metrics.json (``mixer_impl``): every module with an
    ``impl_report()`` (the ``fastformer`` mixer; shared modules once) ->
    ``{"requested": "auto", "ran": ["triton"], "fallbacks": [reasons], "checks": [numeric checks], "modules": n}``
    (``requested``: the distinct values joined by ","); ``{}`` when no module reports (mixers with one
    implementation)."""
    reps = [m.impl_report() for m in model.modules() if callable(getattr(m, "impl_report", None))]
    if not reps:
        return {}
    uniq = lambda items: list(dict.fromkeys(items))  # noqa: E731 -- first-seen order
    return {"requested": ",".join(sorted({r["requested"] for r in reps})),
            "ran": sorted({x for r in reps for x in r["ran"]}),
            "fallbacks": uniq(f for r in reps for f in r["fallbacks"]),
            "checks": [c for r in reps for c in r.get("checks", [])], "modules": len(reps)}
