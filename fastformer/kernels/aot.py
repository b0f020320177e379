"""Ahead-of-time compilation of the fused Fastformer's Triton kernels for a GPU target, without a GPU.

``triton.compile`` lowers a kernel to PTX and runs the ptxas that triton bundles, so every launch specialisation that
``fastformer_fn.py`` uses can be checked on a CPU-only machine for what the interpreter cannot see (dot shape/layout
rules, constexpr misuse) and for resources: registers per thread, spilled bytes, local memory, shared memory::

    from fastformer.kernels import aot
    for st in aot.compile_launches(aot.launches(256, 16, "bf16", mask=True, bias=True, mode="gate", arch=90), arch=90):
        print(st.row())

Launch rules come from ``launch.py``, the module ``fastformer_fn.py`` uses, so what is compiled here is what runs.
The specialisation is the one Triton's JIT picks for a typical call: every pointer 16-byte
aligned, ``N`` and ``PER`` multiples of 16 (``PER`` always is: a multiple of ``BLOCK_N``), ``S`` (programs per batch
row) neither 1 nor a multiple of 16; ``NPART`` is 1 -- a constexpr -- in the folded mode, as at run time. Weights and
biases are fp32 (parameters under autocast) unless ``weight_dtype`` says otherwise.

Registers and spills come from ``ptxas -v`` (its log, captured while triton compiles; re-run on the PTX when the
kernel came from triton's cache); shared memory is triton's dynamic allocation (``metadata.shared``).
All numbers are compile-time facts about the generated code, not timings.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field

from fastformer.kernels.launch import Launch as LaunchRule, dot_args, dtype_name, pads

# per-block shared-memory limit (opt-in maximum, bytes) and register file of the targets we report on
TARGETS = {80: dict(name="sm_80", smem=166912), 86: dict(name="sm_86", smem=101376),
           89: dict(name="sm_89", smem=101376), 90: dict(name="sm_90", smem=232448)}
MODES = ("gate", "fold")
KERNELS = ("_pool_fwd", "_gate_fwd", "_dot_rows_bwd", "_pool_bwd")


class AOTError(RuntimeError):
    """A one-line reason why a kernel could not be compiled or its resources not read."""


# ---- launch rules: fastformer/kernels/launch.py (shared with fastformer_fn.py) -------------------------------------

def _dtype(dtype) -> str:
    try:
        return dtype_name(dtype)
    except ValueError as e:
        raise AOTError(f"aot: {e}") from None


# ---- launch specialisations ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelSpec:
    """One specialisation of one kernel as fastformer_fn.py launches it (what is compiled; the launch *rule* that
    picks it is ``fastformer.kernels.launch.Launch``, imported here as ``LaunchRule``)."""
    kernel: str  # function name in fastformer_triton
    role: str  # which launch: "pool q", "pool p", "u", "k_glob", "dkg", "bwd k", "bwd q"
    D: int
    H: int
    dtype: str
    signature: dict = field(hash=False)  # arg name -> "*bf16" / "i32" / "fp32" / "constexpr"
    constexprs: dict = field(hash=False)
    aligned: tuple = ()  # args with tt.divisibility=16 (pointers 16-byte aligned, ints multiples of 16)
    num_warps: int = 4
    block_n: int = 16
    num_stages: int = 1

    @property
    def flags(self) -> str:
        """the boolean constexprs that are on, e.g. 'MASK BIAS GATE'."""
        c = self.constexprs
        on = [k.replace("HAS_", "") for k in ("HAS_MASK", "HAS_BIAS", "GATE", "SIDE", "WRITE_U") if c.get(k)]
        if c.get("NPART") == 1:
            on.append("NPART=1")
        return " ".join(on) or "-"


def launches(D: int, H: int, dtype="bf16", *, mask: bool = True, bias: bool = True, mode: str = "gate",
             weight_dtype="fp32", block_n: int | None = None, num_warps: int | None = None,
             num_stages: int | None = None, dot: str | None = None, dot_bwd: str | None = None,
             arch: int = 90) -> list[KernelSpec]:
    """The kernel launches of one forward + backward of ``FastformerAdditive`` (``mode="gate"``: u written;
    ``"fold"``: ``glob_only``, k_glob only), in launch order. ``block_n`` / ``num_warps`` / ``num_stages`` /
    ``dot`` / ``dot_bwd`` override the rules of ``launch.py`` (to compare alternatives); ``arch``: the target's
    compute capability (the rules depend on it)."""
    import triton.language as tl
    if D < 1 or H < 1 or D % H:
        raise AOTError(f"aot: D={D} must be a positive multiple of H={H}")
    if mode not in MODES:
        raise AOTError(f"aot: mode {mode!r} must be one of {', '.join(MODES)}")
    dt, wt = _dtype(dtype), _dtype(weight_dtype)
    D_pad, H_pad = pads(D, H)
    try:
        rule = LaunchRule(block_n, num_warps, num_stages, dot, dot_bwd).resolve(D, H, dt, arch)
    except ValueError as e:
        raise AOTError(f"aot: {e}") from None
    bn, nw, num_stages = rule.block_n, rule.num_warps, rule.num_stages

    def dot_consts(d: str) -> dict:
        prec, dot_dt = dot_args(d, dt)
        return dict(PREC=prec, DOT={"fp32": tl.float32, "bf16": tl.bfloat16, "fp16": tl.float16}[dot_dt])
    dots, dots_bwd = dot_consts(rule.dot), dot_consts(rule.dot_bwd)
    x, m = f"*{dt}", ("*u8" if mask else f"*{dt}")  # no mask: fastformer_fn passes q as a dummy pointer
    base = dict(D=D, H=H, DH=D // H, D_PAD=D_pad, H_PAD=H_pad, BLOCK_N=bn)
    ints = dict(N="i32", S="i32", PER="i32", NPART="i32", scale="fp32")
    glob = mode == "fold"

    def make(kernel: str, role: str, types: dict, consts: dict) -> KernelSpec:
        fn = _kernel(kernel)
        unknown = set(types) - set(ints) - set(fn.arg_names)
        if unknown:
            raise AOTError(f"aot: {kernel} has no argument(s) {sorted(unknown)}; kernel signature changed?")
        sig = {n: "constexpr" if n in consts else types.get(n, "*fp32") for n in fn.arg_names}
        missing = [n for n in fn.arg_names if sig[n] == "*fp32" and not n.endswith("_ptr")]
        if missing:
            raise AOTError(f"aot: {kernel}: no type for argument(s) {missing}; update aot.launches")
        aligned = tuple(n for n in fn.arg_names if sig[n].startswith("*") or n in ("N", "PER"))
        return KernelSpec(kernel, role, D, H, dt, sig, dict(consts), aligned, nw, bn, num_stages)

    pool = dict(ints, x_ptr=x, w_ptr=f"*{wt}", b_ptr=f"*{wt}", mask_ptr=m)
    flags = dict(HAS_MASK=mask, HAS_BIAS=bias, **dots)
    out = [make("_pool_fwd", "pool q", pool, dict(base, **flags, GATE=False)),
           make("_pool_fwd", "pool p", pool, dict(base, **flags, GATE=True))]
    gate_c = {k: base[k] for k in ("D", "DH", "D_PAD", "H_PAD", "BLOCK_N")}
    out.append(make("_gate_fwd", "k_glob" if glob else "u", dict(ints, q_ptr=x, u_ptr=x),
                    dict(gate_c, WRITE_U=not glob)))
    if not glob:
        out.append(make("_dot_rows_bwd", "dkg", dict(ints, a_ptr=x, c_ptr=x),
                        {k: base[k] for k in ("D", "D_PAD", "BLOCK_N")}))
    bwd = dict(pool, dx_ptr=x, du_ptr=x)
    bflags = dict(flags, **dots_bwd)
    k_c = dict(base, **bflags, GATE=True, SIDE=False)
    if glob:
        k_c["NPART"] = 1  # one d k_glob "partial" per row: Triton makes an int argument equal to 1 a constexpr
    out.append(make("_pool_bwd", "bwd k", bwd, k_c))
    out.append(make("_pool_bwd", "bwd q", bwd, dict(base, **bflags, GATE=False, SIDE=not glob)))
    return out


def _kernel(name: str):
    import triton

    from fastformer.kernels import fastformer_triton as K
    if name not in KERNELS:
        raise AOTError(f"aot: unknown kernel {name!r}; expected one of {', '.join(KERNELS)}")
    fn = getattr(K, name)
    if not isinstance(fn, triton.runtime.JITFunction):
        raise AOTError("aot: the kernels were imported with TRITON_INTERPRET=1 (interpreted functions cannot be "
                       "compiled); run in a process with TRITON_INTERPRET=0")
    return fn


# ---- compilation and resource usage ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class KernelStats:
    target: str  # "sm_90"
    kernel: str
    role: str
    flags: str
    D: int
    H: int
    dtype: str
    num_warps: int
    block_n: int
    regs: int  # registers per thread
    spill_stores: int  # bytes per thread
    spill_loads: int
    stack: int  # stack frame bytes per thread (local memory)
    shared: int  # dynamic shared memory bytes per program (triton's allocation)
    shared_limit: int  # the target's per-block maximum
    ptx_local: bool  # PTX declares .local memory
    seconds: float  # compile wall time (0 when it came from triton's cache)

    @property
    def spills(self) -> bool:
        return bool(self.spill_stores or self.spill_loads)

    @property
    def shared_ok(self) -> bool:
        return self.shared <= self.shared_limit

    def row(self) -> str:
        return (f"{self.target} {self.dtype} D={self.D} h={self.H} {self.kernel}[{self.role}; {self.flags}] "
                f"warps={self.num_warps} BN={self.block_n} regs={self.regs} spill={self.spill_stores}/"
                f"{self.spill_loads} stack={self.stack} smem={self.shared}")

    def as_dict(self) -> dict:
        return asdict(self)


_PTXAS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_REGS = re.compile(r"Used (\d+) registers")


def toolchain_problem() -> str | None:
    """None when triton's NVIDIA backend and its ptxas are usable here, else a one-line reason."""
    try:
        import triton  # noqa: F401
        from triton.backends.nvidia import compiler as nv
    except Exception as e:  # noqa: BLE001 -- any import failure means: cannot compile for NVIDIA here
        return f"triton's NVIDIA backend is not importable ({type(e).__name__}: {e})"
    for arch in (80, 90):
        try:
            path = nv.get_ptxas(arch).path
        except Exception as e:  # noqa: BLE001
            return f"triton's bundled ptxas for sm_{arch} is unavailable ({e})"
        if not os.access(path, os.X_OK):
            return f"ptxas at {path} is not executable"
    return None


def ptxas_version(arch: int = 90) -> str:
    from triton.backends.nvidia import compiler as nv
    out = subprocess.run([nv.get_ptxas(arch).path, "--version"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"release [\d.]+, V([\d.]+)", out)
    return m.group(1) if m else out.strip().splitlines()[-1]


def _parse_ptxas(log: str, name: str) -> tuple[int, int, int, int] | None:
    """(regs, spill stores, spill loads, stack) for entry ``name`` from a ``ptxas -v`` log."""
    part = log.split(f"Compiling entry function '{name}'", 1)
    if len(part) < 2:
        return None
    m, r = _PTXAS.search(part[1]), _REGS.search(part[1])
    if not (m and r):
        return None
    return int(r.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(1))


def _run_ptxas(ptx: str, arch: int) -> str:
    from triton.backends.nvidia import compiler as nv
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "k.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        cmd = [nv.get_ptxas(arch).path, "-v", "--regAllocOptLevel=2", f"--gpu-name={nv.sm_arch_from_capability(arch)}",
               src, "-o", os.path.join(tmp, "k.cubin")]
        res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode:
        raise AOTError(f"aot: ptxas -v failed ({res.returncode}): {res.stderr.strip().splitlines()[-1:]}")
    return res.stderr + res.stdout


def _one_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not set(ln.strip()) <= set("^~ ")]
    return f"{type(e).__name__}: {lines[-1] if lines else ''}"[:300]


def compile_launch(launch: KernelSpec, arch: int = 90) -> KernelStats:
    """Compile one launch for ``sm_<arch>`` (no GPU needed) and read its resource usage."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget

    if arch not in TARGETS:
        raise AOTError(f"aot: unknown target sm_{arch}; expected one of {', '.join(map(str, TARGETS))}")
    fn = _kernel(launch.kernel)
    attrs = {(fn.arg_names.index(n),): [["tt.divisibility", 16]] for n in launch.aligned}
    src = triton.compiler.ASTSource(fn=fn, signature=launch.signature, constexprs=launch.constexprs, attrs=attrs)
    what = f"{launch.kernel}[{launch.role}; {launch.flags}] {launch.dtype} D={launch.D} h={launch.H} for sm_{arch}"
    buf = io.StringIO()
    t0 = time.perf_counter()
    try:
        with knobs.nvidia.scope(), contextlib.redirect_stdout(buf):
            knobs.nvidia.dump_ptxas_log = True  # make_cubin prints ptxas -v's log
            c = triton.compile(src, target=GPUTarget("cuda", arch, 32),
                               options={"num_warps": launch.num_warps, "num_stages": launch.num_stages})
    except Exception as e:  # noqa: BLE001 -- CompilationError, PTXASError, MLIR failures: one line each
        raise AOTError(f"aot: {what} failed: {_one_line(e)}") from e
    seconds = time.perf_counter() - t0
    name = c.metadata.name
    got = _parse_ptxas(buf.getvalue(), name)
    if got is None:  # from triton's cache: ptxas did not run
        seconds = 0.0
        got = _parse_ptxas(_run_ptxas(c.asm["ptx"], arch), name)
        if got is None:
            raise AOTError(f"aot: {what}: could not read registers/spills from ptxas -v")
    regs, st, ld, stack = got
    return KernelStats(TARGETS[arch]["name"], launch.kernel, launch.role, launch.flags, launch.D, launch.H,
                       launch.dtype, c.metadata.num_warps, launch.block_n, regs, st, ld, stack, c.metadata.shared,
                       TARGETS[arch]["smem"], bool(re.search(r"^\s*\.local\b", c.asm["ptx"], re.M)), seconds)


def _compile_job(job: tuple[KernelSpec, int]) -> KernelStats:
    return compile_launch(*job)


def compile_launches(items, arch: int | None = None, *, jobs: int = 1) -> list[KernelStats]:
    """Compile many launches; ``items``: KernelSpec objects (with ``arch``) or (KernelSpec, arch) pairs. ``jobs > 1``
    forks that many worker processes (each compile is single-threaded). Results keep the input order."""
    work = [(it, arch) if isinstance(it, KernelSpec) else tuple(it) for it in items]
    if any(a is None for _, a in work):
        raise AOTError("aot: compile_launches needs arch= for bare KernelSpec items")
    if jobs <= 1 or len(work) <= 1:
        return [compile_launch(lc, a) for lc, a in work]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    if os.environ.get("TRITON_INTERPRET", "0") == "1":
        raise AOTError("aot: TRITON_INTERPRET=1 is set; compile in a process with TRITON_INTERPRET=0")
    with ProcessPoolExecutor(max_workers=min(jobs, len(work)), mp_context=mp.get_context("fork")) as ex:
        return list(ex.map(_compile_job, work))
