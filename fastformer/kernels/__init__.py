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


def triton_errors() -> tuple[type[BaseException], ...]:
    """Triton's compile / resource error classes present in the installed version (3.x moved them around)."""
    found = []
    for mod, name in (("triton.compiler.errors", "TritonError"), ("triton.compiler.errors", "CompilationError"),
                      ("triton.runtime.errors", "OutOfResources"), ("triton.runtime.errors", "PTXASError")):
        try:
            found.append(getattr(importlib.import_module(mod), name))
        except (ImportError, AttributeError):
            continue
    return tuple(found)


class _Auto:
    """``impl="auto"`` core of one mixer: the fused kernels on CUDA tensors, eager elsewhere. If the kernels cannot
    be built on this GPU (a Triton compile / resource error), it logs the error once and stays eager for this mixer
    -- a run never dies on a missing fused path, and the log says which path ran.

    A kernel of the *backward* that cannot run would only fail inside ``loss.backward()``, too late to fall back; so
    the first call of each kind (dtype, autocast, mask, output path, grad mode) first runs a tiny forward (+ backward
    when grad is on) through the same kernels, which compiles and launches every one of them."""

    PROBE_N = 32  # tokens of the probe sequence

    def __init__(self, m):
        self.m, self.fused_ok, self.probed = m, True, set()

    @staticmethod
    def fused_device(x: torch.Tensor) -> bool:
        return x.is_cuda

    def _probe(self, x: torch.Tensor, mask: torch.Tensor | None, fold: bool) -> None:
        from fastformer.kernels import fastformer_fn
        dev = x.device.type
        key = (str(x.device), x.dtype, torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev),
               mask is None, fold, torch.is_grad_enabled())
        if key in self.probed:
            return
        xp = torch.randn(1, self.PROBE_N, x.shape[2], device=x.device, dtype=x.dtype,
                         requires_grad=torch.is_grad_enabled())
        mp = None if mask is None else torch.ones(1, self.PROBE_N, device=x.device, dtype=mask.dtype)
        out = fastformer_fn.fastformer_triton_forward(self.m, xp, mp, fold=fold)
        if xp.requires_grad:  # only xp's gradient is asked for: the parameters' .grad stay untouched
            torch.autograd.grad(out.float().sum(), xp)
        self.probed.add(key)

    def __call__(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if not (self.fused_ok and self.fused_device(x)):
            return self.m._forward(x, mask)
        from fastformer.kernels import fastformer_fn
        fold = fastformer_fn.fold_rule(x.shape[1], x.shape[2])  # decided here so that the probe uses the same kernels
        try:
            self._probe(x, mask, fold)
            return fastformer_fn.fastformer_triton_forward(self.m, x, mask, fold=fold)
        except triton_errors() as err:
            self.fused_ok = False
            log.warning("fastformer impl='auto': the fused Triton kernels failed on %s (%s: %s); this mixer runs "
                        "eager from now on (impl='triton' makes this an error)", x.device,
                        type(err).__name__, (str(err).splitlines() or [""])[0])
            return self.m._forward(x, mask)


def select_core(m, impl: str):
    """``impl="triton"``: the fused forward (raises for options it lacks or a missing triton package);
    ``impl="auto"`` (the default): fused on CUDA tensors when triton is installed and the options are supported,
    else eager (see ``_Auto``)."""
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
    return _Auto(m)
