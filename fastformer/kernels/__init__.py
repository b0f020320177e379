"""Fused kernels for the ``fastformer`` mixer. Triton is optional (``pip install -e '.[triton]'``): importing this
package never needs it; ``select_core`` imports the kernels only when ``impl`` asks for them."""
from __future__ import annotations

import functools
import importlib.util
import logging

import torch

log = logging.getLogger(__name__)
TRITON_AVAILABLE = importlib.util.find_spec("triton") is not None


def unsupported_options(m) -> list[str]:
    """Options of Fastformer mixer ``m`` that the fused kernels do not implement (empty list = supported)."""
    bad = [f"{name}={getattr(m, attr)!r}" for name, attr, ok in (
        ("interaction", "interaction", "product"), ("global_key_from", "global_key_from", "p"),
        ("key_branch", "key_branch", True), ("pooling", "pooling", "additive"),
        ("output_transform", "use_transform", True), ("query_residual", "query_residual", True))
        if getattr(m, attr) != ok]
    if getattr(m, "value", None) is not None:
        bad.append(f"sharing={m.sharing!r}")
    if m.dropout.p > 0:
        bad.append(f"dropout={m.dropout.p}")
    return bad


def _auto(m, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if not x.is_cuda:
        return m._forward(x, mask)
    from fastformer.kernels.fastformer_fn import fastformer_triton_forward
    return fastformer_triton_forward(m, x, mask)


def select_core(m, impl: str):
    """``impl="triton"``: the fused forward (raises for options it lacks or a missing triton package);
    ``impl="auto"``: fused on CUDA tensors when triton is installed and the options are supported, else eager."""
    bad = unsupported_options(m)
    if impl == "triton":
        if not TRITON_AVAILABLE:
            raise ImportError("fastformer impl='triton' needs the triton package: pip install -e '.[triton]' "
                              "(or use impl='auto' / 'eager')")
        if bad:
            raise ValueError(f"fastformer impl='triton' fuses only the default options (sharing qv/qv+head/qv+layer, "
                             f"product interaction, no dropout, default ablation switches); got {', '.join(bad)}: "
                             "use impl='eager'")
        from fastformer.kernels.fastformer_fn import fastformer_triton_forward
        return functools.partial(fastformer_triton_forward, m)
    if impl != "auto":
        raise ValueError(f"select_core: impl={impl!r} is not one of ['triton', 'auto']")
    if not TRITON_AVAILABLE or bad:
        log.info("fastformer impl='auto' -> eager (%s)", "triton not installed" if not TRITON_AVAILABLE
                 else "options not fused: " + ", ".join(bad))
        return m._forward
    return functools.partial(_auto, m)
