"""Launch rules of the fused Fastformer kernels: one place, used by ``fastformer_fn.py`` (the run) and ``aot.py``
(ahead-of-time compilation and ``scripts/kernel_report.py``), so the report always describes what runs.

No GPU has timed these kernels yet, so the rules are chosen from compile-time facts (``results/kernels_static.md``):
no register spills and little shared memory (more programs per SM for these memory-bound streaming kernels):

* ``BLOCK_N`` rows per block: a ``(BLOCK_N, D_PAD)`` tile of about 4,096 elements (16 <= BLOCK_N <= 64);
* ``num_warps``: 8 from 4,096-element tiles (registers per thread stay low), else 4;
* ``num_stages=1``: no software-pipelined load buffers in shared memory (the loop body is a dependent chain anyway);
* dots: fp32 ``ieee`` operands for fp32 inputs (the 1e-5 contract), otherwise operands in the input dtype
  (bf16/fp16, fp32 accumulation) -- the precision of eager autocast, half the registers and shared memory of fp32
  operands, tensor cores. Exception: the backward kernel on sm_8x (A100 class) keeps fp32 ieee dots up to
  D_PAD = 512, because there ptxas spills 3-7 KB per thread with 16-bit (or tf32) operands at d=256 and none with fp32
  FMA dots (beyond 512 the fp32 tiles exceed sm_8x shared memory, so 16-bit operands it is).

``Launch`` overrides (``FastformerAdditive(..., launch=Launch(block_n=32))`` or ``scripts/bench_fastformer_gpu.py
--launch``) exist so that a GPU session can time alternatives.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

DTYPES = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class Tolerance:
    """How closely the fused kernels must match eager, per tensor (the output and every input/weight gradient).

    ``norm``: the relative error is ``||a - b|| / ||b||`` (True) or ``max|a - b| / max|b|`` (False); exactly-zero
    reference gradients (the official layer's score biases) are measured against the largest reference gradient.
    ``vs_eager``: bound on fused vs eager in the same precision; ``vs_fp32``: bound on fused vs the fp32 math, or 1.25x
    eager's own error there where that is larger (16-bit: the fused path is no worse than eager in that precision)."""
    vs_eager: float
    vs_fp32: float
    norm: bool


#: One place for the fused-vs-eager bounds: the interpreter and GPU tests (tests/test_fastformer_triton.py) assert
#: them, and ``impl="auto"`` checks them at the first call of each kind before it trusts the kernels
#: (fastformer/kernels/__init__.py). "tf32": fp32 inputs with TF32 matmuls allowed, where eager itself is ~1e-3 off.
TOLERANCES = {"fp32": Tolerance(1e-5, 1e-5, False), "tf32": Tolerance(2e-2, 1e-2, True),
              "bf16": Tolerance(2e-2, 1e-2, True), "fp16": Tolerance(2e-2, 1e-2, True)}


@dataclass(frozen=True)
class Launch:
    """Launch shape and dot precision; ``None`` fields follow the rules of this module."""
    block_n: int | None = None
    num_warps: int | None = None
    num_stages: int | None = None
    dot: str | None = None  # "fp32" (ieee) | "input" (operands in the input dtype) | "tf32" (fp32 tiles, tf32 dots)
    dot_bwd: str | None = None  # the same for the backward kernel; None: as ``dot``, but fp32 on sm_8x (D <= 512)

    def resolve(self, D: int, H: int, dtype, arch: int = 90) -> Launch:
        """fill every ``None`` field for hidden size ``D``, ``H`` heads, input ``dtype`` and GPU compute capability
        ``arch`` (e.g. 80, 90); checks the overrides."""
        D_pad, _ = pads(D, H)
        bn = self.block_n or default_block_n(D_pad)
        if bn < 16 or bn & (bn - 1):
            raise ValueError(f"fastformer kernels: block_n={bn} must be a power of two >= 16 (tl.dot needs M >= 16)")
        fp32 = dtype_name(dtype) == "fp32"
        dot = self.dot or ("fp32" if fp32 else "input")
        dot_bwd = self.dot_bwd or ("fp32" if fp32 or (arch < 90 and D_pad <= 512) else dot)
        for name, v in (("dot", dot), ("dot_bwd", dot_bwd)):
            if v not in ("fp32", "input", "tf32"):
                raise ValueError(f"fastformer kernels: {name}={v!r} must be fp32, input or tf32")
        return replace(self, block_n=bn, num_warps=self.num_warps or default_num_warps(D_pad, bn),
                       num_stages=self.num_stages or 1, dot=dot, dot_bwd=dot_bwd)


def parse_overrides(spec: str) -> list[tuple[str, dict]]:
    """``"block_n=32,dot=tf32;num_warps=4"`` -> ``[("block_n=32,dot=tf32", {"block_n": 32, "dot": "tf32"}),
    ("num_warps=4", {"num_warps": 4})]``: sets of ``Launch`` overrides (scripts' ``--launch`` / ``--alt``)."""
    ints, strs = ("block_n", "num_warps", "num_stages"), ("dot", "dot_bwd")
    out = []
    for group in (g.strip() for g in spec.split(";") if g.strip()):
        kw: dict = {}
        for item in (i.strip() for i in group.split(",") if i.strip()):
            k, _, v = (t.strip() for t in item.partition("="))
            if k not in ints + strs or not v or (k in ints and not v.isdigit()):
                raise ValueError(f"launch override {item!r}: expected <name>=<value> with name in "
                                 f"{', '.join(ints + strs)} (ints for the first three)")
            kw[k] = int(v) if k in ints else v
        out.append((group, kw))
    return out


def next_pow2(n: int) -> int:
    return 1 << max(0, (int(n) - 1).bit_length())


def pads(D: int, H: int) -> tuple[int, int]:
    """(D_PAD, H_PAD): register-tile widths; dots need >= 16 columns, hence H_PAD >= 16."""
    return next_pow2(D), max(16, next_pow2(H))


def default_block_n(D_pad: int) -> int:
    """rows per block: a (BLOCK_N, D_PAD) tile of ~4,096 elements, 16 <= BLOCK_N <= 64."""
    return max(16, min(64, 4096 // D_pad))


def default_num_warps(D_pad: int, block_n: int) -> int:
    return 8 if D_pad * block_n >= 4096 else 4


def dtype_name(dtype) -> str:
    s = str(dtype).replace("torch.", "")
    s = {"float32": "fp32", "float": "fp32", "bfloat16": "bf16", "float16": "fp16", "half": "fp16"}.get(s, s)
    if s not in DTYPES:
        raise ValueError(f"fastformer kernels: unsupported dtype {dtype!r}; expected one of {', '.join(DTYPES)}")
    return s


def dot_args(dot: str, dtype) -> tuple[str, str]:
    """(PREC, DOT) kernel constexprs: input precision and the operand dtype name ('fp32' | 'bf16' | 'fp16')."""
    if dot == "input":
        return "ieee", dtype_name(dtype)
    return ("ieee" if dot == "fp32" else "tf32"), "fp32"
