"""Compile-time resource report of the fused Fastformer's Triton kernels (no GPU needed): registers, spills, shared
memory of every launch specialisation ``fastformer/kernels/fastformer_fn.py`` uses, for sm_80 and sm_90.

    python scripts/kernel_report.py                              # -> results/kernels_static.md
    python scripts/kernel_report.py --targets 90 --dtypes bf16 --shapes 256x16 --out - --alt "dot=tf32;block_n=32"

Each shape is D x h. ``--alt`` adds, per ';'-separated set of overrides (block_n, num_warps, num_stages, dot), a
section with the launches of ``--alt-dtypes`` compiled under that launch rule, for comparison. These are compile-time
facts from triton + ptxas, not timings.
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ["TRITON_INTERPRET"] = "0"  # before the kernels are imported: compiled, not interpreted functions
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton's current default, stated to silence its warning

from fastformer.kernels import aot  # noqa: E402
from fastformer.kernels.launch import parse_overrides  # noqa: E402
from fastformer.utils import atomic_write_text  # noqa: E402

SHAPES = "256x16,256x8,128x2,768x12,512x4"  # dh 16 (paper Table 8), 32, 64, 64 (BERT-base width), 128


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--targets", default="80,90", help="compute capabilities, comma-separated (default 80,90)")
    p.add_argument("--dtypes", default="fp32,bf16,fp16", help="input dtypes (fp32, bf16, fp16)")
    p.add_argument("--shapes", default=SHAPES, help=f"D x h list (default {SHAPES})")
    p.add_argument("--modes", default="gate,fold", help="output paths: gate (u written), fold (k_glob only)")
    p.add_argument("--mask", choices=("yes", "no", "both"), default="yes", help="padding mask (default yes)")
    p.add_argument("--bias", choices=("yes", "no", "both"), default="yes",
                   help="score bias: yes = official variant, no = paper variant (default yes)")
    p.add_argument("--alt", default="", help="launch-rule overrides to compare, ';'-separated sets of key=value "
                   "(block_n, num_warps, num_stages, dot), e.g. 'dot=tf32;block_n=32,num_stages=3'")
    p.add_argument("--alt-dtypes", default="bf16", help="dtypes of the --alt sections (default bf16)")
    p.add_argument("--jobs", type=int, default=max(1, min(4, os.cpu_count() or 1)), help="compile processes")
    p.add_argument("--out", default=str(ROOT / "results" / "kernels_static.md"), help="markdown file, or - for stdout")
    return p.parse_args(argv)


def _split(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def _shapes(s: str) -> list[tuple[int, int]]:
    out = []
    for v in _split(s):
        try:
            D, H = (int(x) for x in v.lower().split("x"))
        except ValueError:
            raise SystemExit(f"kernel_report: bad shape {v!r}; expected DxH, e.g. 256x16") from None
        out.append((D, H))
    return out


def _alts(s: str) -> list[dict]:
    try:
        return [kw for _, kw in parse_overrides(s)]
    except ValueError as e:
        raise SystemExit(f"kernel_report --alt: {e}") from None


def _yn(v: str) -> list[bool]:
    return {"yes": [True], "no": [False], "both": [True, False]}[v]


def collect(args, dtypes: str, **rule) -> list[tuple[aot.KernelSpec, int, str]]:
    """(launch, arch, modes) for the grid, each distinct specialisation once (pool kernels are shared by modes)."""
    seen: dict = {}
    for arch in (int(t) for t in _split(args.targets)):
        for dt in _split(dtypes):
            for D, H in _shapes(args.shapes):
                for mask in _yn(args.mask):
                    for bias in _yn(args.bias):
                        for mode in _split(args.modes):
                            for lc in aot.launches(D, H, dt, mask=mask, bias=bias, mode=mode, arch=arch, **rule):
                                key = (arch, lc.kernel, lc.role, lc.flags, dt, D, H, lc.block_n, lc.num_warps,
                                       tuple(sorted(lc.signature.items())))
                                if key in seen:
                                    seen[key][2].append(mode)
                                else:
                                    seen[key] = [lc, arch, [mode]]
    return [(lc, arch, "/".join(modes)) for lc, arch, modes in seen.values()]


def table(rows) -> list[str]:
    out = ["| target | dtype | D | h | kernel | launch [flags] | modes | num_warps | BLOCK_N | regs | "
           "spill st/ld (B) | stack (B) | smem (B) | smem % of max |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for st, modes in rows:
        spill = f"**{st.spill_stores}/{st.spill_loads}**" if st.spills else "0/0"
        pct = 100 * st.shared / st.shared_limit
        smem_pct = f"**{pct:.0f}%**" if not st.shared_ok else f"{pct:.0f}%"
        out.append(f"| {st.target} | {st.dtype} | {st.D} | {st.H} | `{st.kernel}` | {st.role} [{st.flags}] | {modes} "
                   f"| {st.num_warps} | {st.block_n} | {st.regs} | {spill} | {st.stack} | {st.shared} | {smem_pct} |")
    return out


def run(args, dtypes: str, **rule):
    work = collect(args, dtypes, **rule)
    stats = aot.compile_launches([(lc, arch) for lc, arch, _ in work], jobs=args.jobs)
    return [(st, modes) for st, (_, _, modes) in zip(stats, work)]


def summary(rows) -> list[str]:
    spilled = [st for st, _ in rows if st.spills]
    over = [st for st, _ in rows if not st.shared_ok]
    lines = [f"- {len(rows)} specialisations compiled; {len(spilled)} spill registers; "
             f"{len(over)} exceed the target's shared-memory maximum."]
    worst = sorted(spilled, key=lambda s: -s.spill_stores)[:5]
    if worst:
        lines.append("- largest spills: " + "; ".join(
            f"{s.target} {s.dtype} D={s.D} h={s.H} `{s.kernel}` {s.role} [{s.flags}]: "
            f"{s.spill_stores}/{s.spill_loads} B" for s in worst))
    return lines


def main(argv=None) -> int:
    args = parse_args(argv)
    problem = aot.toolchain_problem()
    if problem:
        raise SystemExit(f"kernel_report: cannot compile for NVIDIA targets here: {problem}")
    import triton

    t0 = time.perf_counter()
    try:
        rows = run(args, args.dtypes)
        alts = [(rule, run(args, args.alt_dtypes, **rule)) for rule in _alts(args.alt)]
    except aot.AOTError as e:
        raise SystemExit(f"kernel_report: {e}") from None
    targets = sorted({int(t) for t in _split(args.targets)})
    ptxas = ", ".join(f"sm_{a}: ptxas {aot.ptxas_version(a)}" for a in targets)
    md = [
        "# Fused Fastformer kernels: static resource usage",
        "",
        f"Written by `scripts/kernel_report.py` on {datetime.date.today().isoformat()} with triton "
        f"{triton.__version__} ({ptxas}); {time.perf_counter() - t0:.0f} s of compilation on this machine.",
        "",
        "**These are compile-time facts, not timings**: each kernel launch that `fastformer/kernels/fastformer_fn.py` "
        "makes was compiled ahead of time (`triton.compile` for a `GPUTarget`, no GPU involved) and `ptxas -v` "
        "reported registers per thread and spilled bytes per thread; smem is triton's dynamic shared memory per "
        "program (max: 163 KiB per block on sm_80, 227 KiB on sm_90). Spills cost local-memory traffic, not "
        "correctness; smem above the maximum fails at launch.",
        "",
        "Launch rules (fastformer/kernels/launch.py): D_PAD = next_pow2(D), H_PAD = max(16, next_pow2(h)), "
        "BLOCK_N = max(16, min(64, 4096 // D_PAD)), num_warps = 8 if D_PAD * BLOCK_N >= 4096 else 4, num_stages = 1; "
        "dot operands fp32 (ieee) for fp32 inputs, the input dtype (bf16/fp16, fp32 accumulation) otherwise, except "
        "the backward kernel on sm_8x up to D_PAD = 512 (fp32 ieee: no spills there); fp32 "
        f"weights (autocast). Flags: mask {args.mask}, bias {args.bias} (bias = the official variant). "
        "Specialisation: aligned pointers, N and PER multiples of 16, S > 1; fold mode's `NPART=1` is a constexpr. "
        "Launches: `pool q` / `pool p` (forward pooling of q and of p = k * q_glob), `u` / `k_glob` (gate kernel "
        "with / without writing u), `dkg` (d k_glob partials), `bwd k` / `bwd q` (backward pooling).",
        "",
        "## Summary",
        "",
        *summary(rows),
        "",
        "## Per kernel (launch rules of launch.py)",
        "",
        *table(rows),
    ]
    for rule, r in alts:
        desc = ", ".join(f"{k} = {v}" for k, v in rule.items())
        md += ["", f"## Alternative launch rule ({desc}; other rules as above)", "", *summary(r), "", *table(r)]
    text = "\n".join(md) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        atomic_write_text(args.out, text)
        print(f"kernel_report: wrote {args.out} ({len(rows)} kernels)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
