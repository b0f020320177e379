"""The token-mixer contract and registry.

Every sequence mixer in this repository (Fastformer and all baselines) is a ``TokenMixer``:

* constructor ``Mixer(d_model: int, n_heads: int, *, dropout: float = 0.0, max_len: int | None = None, **kw)``
  -- all mixer-specific options are keyword-only and documented on the class;
* ``forward(x: (B, N, D) float, mask: (B, N) bool | None) -> (B, N, D)``, where ``mask[b, i]`` is True for a real token
  and ``None`` means every token is real. Outputs at real positions never depend on the content of padded positions;
  outputs at padded positions are unspecified (but finite).

Mixers register themselves with ``@register_mixer("name")``; ``build_mixer("name", d_model=..., n_heads=..., **kw)``
builds one and fails with the list of valid names / keyword arguments when given something unknown.
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

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError


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


def build_mixer(name: str, *, d_model: int, n_heads: int, **kwargs) -> TokenMixer:
    """Build the mixer registered as ``name``. Unknown names or keyword arguments raise with the valid ones."""
    if name not in MIXERS:
        raise KeyError(f"unknown mixer {name!r}; registered mixers: {', '.join(sorted(MIXERS))}")
    valid = mixer_kwargs(name)
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
