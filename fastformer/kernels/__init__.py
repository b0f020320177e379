"""Fused kernels for the ``fastformer`` mixer. Triton is optional (``pip install -e '.[triton]'``): importing this
package never needs it; ``select_core`` imports the kernels only when ``impl`` asks for them."""
from __future__ import annotations

import functools
import importlib.util
import logging
import math

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
    if getattr(m, "causal", False):
        bad.append("causal=True")
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


#: the official layer's score biases: softmax is shift-invariant, so their gradients are 0 in exact math (measured
#: against the largest reference gradient instead of their own size)
ZERO_GRAD = ("query_att.bias", "key_att.bias")


def relative_errors(got, ref, *, norm: bool = False, zero_grad=ZERO_GRAD) -> dict[str, float]:
    """``got`` / ``ref`` = (output, {name: gradient}): per tensor, ``max|a - b| / max|b|`` (norm=False) or
    ``||a - b|| / ||b||`` (norm=True); the gradients named in ``zero_grad`` are measured against the largest
    reference gradient. The measure of ``launch.TOLERANCES`` (tests and ``impl="auto"``'s check)."""
    y, g = got
    y_ref, g_ref = ref
    scale_all = max((v.float().abs().max().item() for v in g_ref.values()), default=0.0)
    out = {}
    for name, a, b in [("out", y, y_ref)] + [(n, g[n], g_ref[n]) for n in g_ref]:
        a, b = a.float(), b.float()
        err, size = ((a - b).norm().item(), b.norm().item()) if norm else ((a - b).abs().max().item(),
                                                                           b.abs().max().item())
        out[name] = err / max(scale_all if name in zero_grad else size, 1e-30)
    return out


def _worst(errs: dict[str, float]) -> str:
    """the name with the largest error (NaN counts as the largest)."""
    return max(errs, key=lambda n: math.inf if math.isnan(errs[n]) else errs[n])


class NumericsMismatch(RuntimeError):
    """The fused kernels ran but disagree with eager beyond ``launch.TOLERANCES`` (``impl="auto"``'s check)."""


def check_precision(x: torch.Tensor) -> str:
    """The precision a mixer call computes in -- the autocast dtype when autocast is on, else the input's dtype --
    as a ``launch.TOLERANCES`` key; fp32 on CUDA with TF32 matmuls allowed is "tf32" (eager itself is ~1e-3 off)."""
    from fastformer.kernels.launch import dtype_name
    dev = x.device.type
    name = dtype_name(torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else x.dtype)
    if name == "fp32" and x.is_cuda and (torch.backends.cuda.matmul.allow_tf32
                                         or torch.get_float32_matmul_precision() != "highest"):
        name = "tf32"
    return name


class _Auto:
    """``impl="auto"`` core of one mixer: the fused kernels on CUDA tensors, eager elsewhere. If the kernels cannot
    be built on this GPU (a Triton compile / resource error) or compute wrong numbers, it logs why once and stays
    eager for this mixer -- a run never dies on, or trains through, a broken fused path, and ``report()`` (the run's
    metrics.json, ``mixer_impl``) says which path ran.

    The first call of each kind (dtype, autocast, mask, output path, grad mode) first runs the fused path and eager on
    a small input of that kind (2 x ``PROBE_N`` tokens, the second row padded when the call has a mask) and compares
    the output and, when grad is on, the input and weight gradients (``torch.autograd.grad``: the parameters' .grad
    stay untouched) against ``launch.TOLERANCES`` of the call's precision: fused vs eager in that precision, or, in
    16-bit with fp32 weights (autocast), no worse than 1.25x eager's own error against the fp32 math. This also
    compiles and launches every kernel, so a *backward* kernel that cannot run fails here rather than inside
    ``loss.backward()``, too late to fall back. The probe draws its input from its own seeded generator (the run's
    random streams are untouched)."""

    PROBE_N = 32  # tokens of the probe sequence

    def __init__(self, m):
        self.m, self.fused_ok, self.probed = m, True, set()
        self.ran: set[str] = set()  # "triton" / "eager": what this mixer's calls actually ran
        self.fallbacks: list[str] = []  # why it went eager (one entry: it stays eager after the first)
        self.checks: list[dict] = []  # the numeric check of each kind: kind, worst tensor, error, tolerance, ok

    @staticmethod
    def fused_device(x: torch.Tensor) -> bool:
        return x.is_cuda

    def _kind(self, x, mask, fold) -> tuple:
        dev = x.device.type
        return (str(x.device), x.dtype, torch.is_autocast_enabled(dev) and torch.get_autocast_dtype(dev),
                mask is None, fold, torch.is_grad_enabled())

    @staticmethod
    def _describe(kind: tuple, prec: str) -> str:
        device, dtype, amp, no_mask, fold, grad = kind
        return (f"{device} {str(dtype).replace('torch.', '')} input"
                f"{', autocast ' + str(amp).replace('torch.', '') if amp else ''}, {prec} check, "
                f"{'no mask' if no_mask else 'mask'}, {'fold' if fold else 'gate'} output, "
                f"{'grad' if grad else 'no grad'}")

    def _run(self, fn, xp, mp, w, *, fp32: bool = False):
        """(output, {"x": dL/dx, param name: dL/dparam}) of ``fn`` on the probe input, L = sum(out * w)."""
        grad = torch.is_grad_enabled()
        xi = (xp.float() if fp32 else xp).detach().requires_grad_(grad)
        if fp32:
            with torch.autocast(xp.device.type, enabled=False):
                y = fn(xi, mp)
        else:
            y = fn(xi, mp)
        if not grad:
            return y.detach(), {}
        named = [(n, p) for n, p in self.m.named_parameters() if p.requires_grad]
        grads = torch.autograd.grad((y.float() * w).sum(), [xi] + [p for _, p in named], allow_unused=True)
        ref = [xi] + [p for _, p in named]
        return y.detach(), {n: torch.zeros_like(r) if g is None else g
                            for n, g, r in zip(["x"] + [n for n, _ in named], grads, ref)}

    def _probe(self, x: torch.Tensor, mask: torch.Tensor | None, fold: bool) -> None:
        from fastformer.kernels import fastformer_fn
        from fastformer.kernels.launch import TOLERANCES
        kind = self._kind(x, mask, fold)
        if kind in self.probed:
            return
        prec = check_precision(x)
        tol = TOLERANCES[prec]
        gen = torch.Generator().manual_seed(0)
        B, N, D = 2, self.PROBE_N, x.shape[2]
        xp = torch.randn(B, N, D, generator=gen).to(x.device, x.dtype)
        w = (torch.randn(B, N, D, generator=gen) * (1024 if prec == "fp16" else 1)).to(x.device)  # fp16: a
        mp = None if mask is None else (  # GradScaler-like loss scale (tiny gradients are subnormal otherwise)
            torch.arange(N)[None, :] < torch.tensor([N, (3 * N) // 5])[:, None]).to(x.device, mask.dtype)
        fused = self._run(lambda z, k: fastformer_fn.fastformer_triton_forward(self.m, z, k, fold=fold), xp, mp, w)
        eager = self._run(self.m._forward, xp, mp, w)
        errs = relative_errors(fused, eager, norm=tol.norm)
        worst = _worst(errs)
        ok = all(e <= tol.vs_eager for e in errs.values())  # NaN fails
        check = {"kind": self._describe(kind, prec), "tensor": worst, "rel_err": errs[worst],
                 "tolerance": tol.vs_eager, "measure": "norm" if tol.norm else "max", "vs": "eager", "ok": ok}
        if not ok and prec in ("bf16", "fp16") and all(p.dtype == torch.float32 for p in self.m.parameters()):
            exact = self._run(self.m._forward, xp, mp, w, fp32=True)  # 16-bit autocast: no worse than eager
            e_f, e_e = relative_errors(fused, exact, norm=True), relative_errors(eager, exact, norm=True)
            bound = {n: max(tol.vs_fp32, 1.25 * e_e[n]) for n in e_f}
            over = {n: e_f[n] / bound[n] for n in e_f if not e_f[n] <= bound[n]}
            ok = not over
            if over:
                n = _worst(over)
                check.update(tensor=n, rel_err=e_f[n], tolerance=bound[n], measure="norm", vs="fp32 math", ok=False)
            else:
                check.update(ok=True, vs="fp32 math (no worse than eager)")
        self.checks.append(check)
        if not ok:
            raise NumericsMismatch(
                f"{check['tensor']}: relative error {check['rel_err']:.3g} vs {check['vs']} > tolerance "
                f"{check['tolerance']:.3g} ({check['measure']}-relative; {check['kind']})")
        self.probed.add(kind)

    def __call__(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if not (self.fused_ok and self.fused_device(x)):
            if "eager" not in self.ran:  # (a test, not an add on every call: torch.compile guards on the set)
                self.ran.add("eager")
            return self.m._forward(x, mask)
        from fastformer.kernels import fastformer_fn
        fold = fastformer_fn.fold_rule(x.shape[1], x.shape[2])  # decided here so that the probe uses the same kernels
        try:
            self._probe(x, mask, fold)
            out = fastformer_fn.fastformer_triton_forward(self.m, x, mask, fold=fold)
            self.ran.add("triton")
            return out
        except (NumericsMismatch, *triton_errors()) as err:
            self.fused_ok = False
            what = ("computed wrong numbers" if isinstance(err, NumericsMismatch) else "failed")
            reason = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
            self.fallbacks.append(f"fused Triton kernels {what} on {x.device} ({reason}); eager from then on")
            log.warning("fastformer impl='auto': the fused Triton kernels %s on %s (%s); this mixer runs "
                        "eager from now on (impl='triton' makes this an error)", what, x.device, reason)
            self.ran.add("eager")
            return self.m._forward(x, mask)

    def report(self) -> dict:
        return {"requested": "auto", "ran": sorted(self.ran), "fallbacks": list(self.fallbacks),
                "checks": list(self.checks)}


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
