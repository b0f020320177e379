"""Training-step benchmark of the classifiers on real data: tokens/s before and after length-grouped batching, where
the step's time goes, and its achieved FLOP rate as a ratio to a large GEMM measured in the same run.

    python scripts/bench_train_step.py                      # IMDB (DATA_ROOT), the cpu preset's model, 2 threads
    python scripts/bench_train_step.py --preset paper --mixers fastformer --steps 10
    python scripts/bench_train_step.py --override data.max_len=512 --repeats 3 --out results/train_step_cpu.md
    python scripts/bench_train_step.py --threads 1 --jobs 1,2    # alone, and 2 jobs x 1 thread side by side

For each mixer and each variant (``before``: random batches and torch's dropout, as runs were trained until now;
``grouped``: ``task.group_by_length=true``; ``grouped+fast_dropout``: also ``trainer.cpu_dropout=fast``;
``grouped+fast_dropout+heap``: also glibc keeps freed memory, as the Trainer now sets for every run --
fastformer/utils.py ``keep_cpu_memory``; on request ``...+compile``: torch.compile of the whole model,
``...+no_ffn_dropout``: the released code's FFN, without dropout on its hidden activation, ``...+d_model256``: the
paper's width) it builds the task, in a fresh process per row, exactly as ``scripts/train.py`` does (Hydra composition
of ``experiment=<dataset>/<mixer>``), runs ``--warmup`` untimed steps and then ``--steps`` timed steps of the same
training loop (forward, backward, optimizer step), and reports: real (non-padding) training tokens/s, the padded
fraction of the batches, milliseconds per step in collate / forward+backward / optimizer, the FLOPs of the step as
executed (torch's FlopCounterMode: matmuls and attention; padding included) per second, and that rate over the GEMM
rate (a 2048 x 2048 fp32 matmul timed in the row's process right before and after it). ``--jobs 1,2``: every row is
also run as 2 identical processes at once, as the cpu stages train (2 jobs x 1 thread), so each process's step and
GEMM share the machine's memory bandwidth with the other, as they do in a stage.
``--profile``: the rows of the current training setting (``grouped+fast_dropout+heap``) are also profiled
(torch.profiler over ``--steps`` more steps) for a second table: the share of the step spent in matmuls and fused
attention, the rate they run at against the same GEMM (the step's % of GEMM is the product of the two), the share a
50%-of-GEMM goal would need, and the largest other ops. It says how far the step is from such a goal, and why.
Not a test: timings depend on the machine; the committed table says which machine and torch produced it.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from fastformer.ops import set_cpu_dropout  # noqa: E402
from fastformer.tasks import build_task  # noqa: E402
from fastformer.tasks.base import build_loader  # noqa: E402
from fastformer.train.sampling import LengthGroupedBatchSampler, global_batches, padded_fraction  # noqa: E402
from fastformer.utils import count_params, git_sha, keep_cpu_memory, seed_everything  # noqa: E402


def gemm_gflops(n: int = 2048, reps: int = 10) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def compose_cfg(dataset: str, mixer: str, preset: str, overrides: list[str]):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        return compose("train", overrides=[f"experiment={dataset}/{mixer}", f"preset={preset}", "logger=none",
                                           *overrides])


class Variant(NamedTuple):
    """What a row changes: length-grouped batches, the CPU dropout implementation, glibc keeps freed memory
    (fastformer/utils.py keep_cpu_memory), torch.compile of the whole model, extra Hydra overrides."""
    grouped: bool
    dropout: str
    keep_memory: bool
    compiled: bool = False
    overrides: tuple[str, ...] = ()


# Every row runs in its own fresh process.
VARIANTS = {"before": Variant(False, "torch", False), "grouped": Variant(True, "torch", False),
            "grouped+fast_dropout": Variant(True, "fast", False),
            "grouped+fast_dropout+heap": Variant(True, "fast", True),
            # not in the default rows: torch.compile (inductor) of the whole classifier, default dynamic shapes (the
            # grouped batches' lengths vary); the dropout is torch's inside the compiled graph (fastformer/ops.py)
            "grouped+fast_dropout+heap+compile": Variant(True, "fast", True, compiled=True),
            # not in the default rows: the released code's FFN, without dropout on its hidden activation
            "grouped+fast_dropout+heap+no_ffn_dropout": Variant(True, "fast", True,
                                                                overrides=("model.encoder.ffn_dropout=false",)),
            # not in the default rows: the paper's width (d_model 256, 16 heads of 16; the FFN stays 256 wide, as in
            # the released config), the rest of the preset unchanged
            "grouped+fast_dropout+heap+d_model256": Variant(True, "fast", True,
                                                            overrides=("model.d_model=256", "model.n_heads=16")),
            # ... and with the released code's FFN: the paper preset's model (configs/preset_task/paper_classification)
            "grouped+fast_dropout+heap+d_model256+no_ffn_dropout": Variant(
                True, "fast", True,
                overrides=("model.d_model=256", "model.n_heads=16", "model.encoder.ffn_dropout=false"))}
DEFAULT_VARIANTS = "before,grouped,grouped+fast_dropout,grouped+fast_dropout+heap"
COMPILE_WARMUP = 8  # warm-up steps of a compiled row at least: they include compiling and the dynamic-shape recompile


def setup_run(task, cfg, *, grouped: bool, dropout: str, n_batches: int, compiled: bool = False):
    """The model (``compiled``: the module torch.compile wraps it in), optimizer and loader of one measured row: seeded,
    the epoch's first ``n_batches`` batches (length grouped or random), and the epoch's padded fraction."""
    set_cpu_dropout(dropout)
    seed_everything(1)
    model = task.build_model()
    opt = hydra.utils.instantiate(cfg.optimizer)(params=[p for p in model.parameters() if p.requires_grad])
    ds = task.dataset("train")
    gb = int(cfg.task.batch_size)
    if grouped:
        sampler = LengthGroupedBatchSampler(ds.lengths, global_batch=gb, seed=1000,
                                            pool=int(cfg.task.get("length_pool", 50)))
        batches, pad = list(sampler), sampler.padded_fraction
    else:
        batches = global_batches(len(ds), gb, seed=1000)
        pad = padded_fraction(batches, ds.lengths)
    loader = iter(build_loader(task, "train", dataset=ds, batch_sampler=batches[:n_batches]))
    model.train()
    return (torch.compile(model) if compiled else model), opt, loader, pad


def bench_one(task, cfg, *, grouped: bool, dropout: str, steps: int, warmup: int, compiled: bool = False) -> dict:
    model, opt, loader, pad = setup_run(task, cfg, grouped=grouped, dropout=dropout, n_batches=warmup + steps,
                                        compiled=compiled)
    t_collate = t_fb = t_opt = 0.0
    tokens = slots = 0
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        batch = next(loader)
        collate_s = time.perf_counter() - t0
        if i == warmup:  # count the FLOPs of one measured step's forward + backward (then time it unobserved;
            # the counting pass is timed as nothing: neither collate nor step)
            with FlopCounterMode(display=False) as fc:  # (on the eager module: the same FLOPs, counted per op)
                loss, _ = task.training_step(getattr(model, "_orig_mod", model), batch)
                loss.backward()
            flops_per_slot = fc.get_total_flops() / batch["attention_mask"].numel()
            opt.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        loss, n_tok = task.training_step(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        t3 = time.perf_counter()
        if i >= warmup:
            t_collate += collate_s
            t_fb += t2 - t1
            t_opt += t3 - t2
            tokens += int(n_tok)
            slots += batch["attention_mask"].numel()
    total = t_collate + t_fb + t_opt
    flops = flops_per_slot * slots
    return {"tokens_per_s": tokens / total, "pad_measured": 1 - tokens / slots, "pad_epoch": pad,
            "ms_collate": 1e3 * t_collate / steps, "ms_fwd_bwd": 1e3 * t_fb / steps, "ms_opt": 1e3 * t_opt / steps,
            "gflops": flops / total / 1e9, "gflops_fb": flops / t_fb / 1e9, "params": count_params(model),
            "embed_params": model.embed.weight.numel()}


PROFILED = "grouped+fast_dropout+heap"  # the setting training runs use: the row --profile looks into
# matmul ops, and (is_matmul) torch's fused attention: the ops whose FLOPs FlopCounterMode counts
MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def is_matmul(op: str) -> bool:
    return op in MATMUL_OPS or "scaled_dot_product" in op


def profile_steps(task, cfg, steps: int) -> dict:
    """Where a training step's time goes (the current setting, after warm-up), from torch.profiler's self CPU time
    (without FLOP recording, which multiplied the step time ~6x here): seconds per step in the matmul ops, and the
    largest other ops' shares of the profiled time. The profiler adds ~0.2-0.3 s per step of per-op overhead, mostly
    to the many small ops, so the other ops' shares are of the profiled time, and the matmul share is taken against
    the unprofiled step (see main)."""
    # the same batches as the timed steps (the epoch's first ones), so FLOPs and times refer to the same work
    grouped, dropout = VARIANTS[PROFILED].grouped, VARIANTS[PROFILED].dropout
    model, opt, loader, _ = setup_run(task, cfg, grouped=grouped, dropout=dropout, n_batches=2 + steps)

    def step() -> None:
        loss, _ = task.training_step(model, next(loader))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in ops)
    others = sorted((e for e in ops if not is_matmul(e.key)), key=lambda e: -e.self_cpu_time_total)[:6]
    return {"mm_s": sum(e.self_cpu_time_total for e in ops if is_matmul(e.key)) / 1e6 / steps,
            "top": [(e.key.replace("aten::", ""), e.self_cpu_time_total / total) for e in others]}


def child(args) -> None:
    """One row, in this (fresh) process: print its measurements as a JSON line."""
    mixer, variant = args.child.split(":")
    v = VARIANTS[variant]
    torch.set_num_threads(args.threads)
    if v.keep_memory and not keep_cpu_memory():
        raise SystemExit("keep_cpu_memory() did not apply here (not glibc, or FASTFORMER_SYSTEM_MALLOC=1)")
    cfg = compose_cfg(args.dataset, mixer, args.preset, [*v.overrides, *args.override])
    task = build_task(cfg)
    task.setup()
    before = gemm_gflops()
    r = bench_one(task, cfg, grouped=v.grouped, dropout=v.dropout, steps=args.steps, warmup=args.warmup,
                  compiled=v.compiled)
    if args.profile and variant == PROFILED:
        r["profile"] = profile_steps(task, cfg, args.steps)
    gemm = (before + gemm_gflops()) / 2  # the reference rate right before and after this row, in its own process
    print(json.dumps({**r, "vocab": len(task.ds.vocab), "gemm": gemm}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="imdb")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--mixers", default="fastformer,transformer")
    ap.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"comma list of {list(VARIANTS)}")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--override", action="append", default=[], help="extra Hydra override (repeatable)")
    ap.add_argument("--repeats", type=int, default=1,
                    help="measure every row this many times, the rows interleaved (median and range reported)")
    ap.add_argument("--jobs", default="1",
                    help="comma list of how many identical processes run each row side by side (e.g. 1,2: alone, and "
                         "as the cpu stage trains, 2 jobs x 1 thread); every process times its own GEMM")
    ap.add_argument("--out", default=None, help="write the markdown table here (default: print only)")
    ap.add_argument("--profile", action="store_true",
                    help=f"also profile the {PROFILED} rows: where the step's time goes (second table)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)  # mixer:variant, run by main in a new process
    args = ap.parse_args()
    if args.child:
        return child(args)
    torch.set_num_threads(args.threads)
    if any(VARIANTS[v].compiled for v in args.variants.split(",")):  # a compiled row: every row times the same batches
        args.warmup = max(args.warmup, COMPILE_WARMUP)
    rows = []
    passed = [f"--dataset={args.dataset}", f"--preset={args.preset}", f"--steps={args.steps}",
              f"--warmup={args.warmup}", f"--threads={args.threads}", *(f"--override={o}" for o in args.override),
              *(["--profile"] if args.profile else [])]
    levels = [int(j) for j in args.jobs.split(",")]
    runs: dict[tuple[str, str, int], list[dict]] = {}
    for rep in range(args.repeats):  # interleaved (every row once, then again) so the machine's drift hits all rows
        for mixer in args.mixers.split(","):
            for batching in args.variants.split(","):
                for n in levels:
                    # every row in fresh processes, as a training run starts: the allocator's state (glibc raises its
                    # mmap threshold as large blocks are freed), caches and warm pages would otherwise carry over;
                    # n > 1: n identical processes at once, sharing the cores' memory bandwidth as a stage's jobs do
                    procs = [subprocess.Popen([sys.executable, __file__, f"--child={mixer}:{batching}", *passed],
                                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                             for _ in range(n)]
                    for proc in procs:
                        stdout, stderr = proc.communicate()
                        if proc.returncode:
                            for other in procs:  # no orphan left timing on a machine this run no longer measures
                                other.kill()
                            raise SystemExit(f"{mixer} {batching} failed:\n{stderr[-3000:]}")
                        r = json.loads(stdout.strip().splitlines()[-1])
                        runs.setdefault((mixer, batching, n), []).append(r)
                        print(f"[{rep + 1}/{args.repeats}] {mixer:>12} {batching:>8} x{n}: {r['tokens_per_s']:8.0f} "
                              f"tok/s  pad {r['pad_measured']:.1%}  collate/fwd+bwd/opt {r['ms_collate']:.0f}/"
                              f"{r['ms_fwd_bwd']:.0f}/{r['ms_opt']:.0f} ms  {r['gflops']:.1f} GFLOP/s = "
                              f"{r['gflops'] / r['gemm']:.0%} of GEMM ({r['gemm']:.0f})", flush=True)
    for (mixer, batching, n), rs in runs.items():  # each row: its median run (by tokens/s) and the range over repeats
        rs.sort(key=lambda r: r["tokens_per_s"])
        r = dict(rs[len(rs) // 2])
        r["range"] = (rs[0]["tokens_per_s"], rs[-1]["tokens_per_s"])
        pct = sorted(x["gflops"] / x["gemm"] for x in rs)  # each repeat against its own GEMM
        r["pct_range"] = (pct[0], pct[-1])
        rows.append((mixer, batching, n, r))
    cfg = compose_cfg(args.dataset, args.mixers.split(",")[0], args.preset, args.override)
    gemms = [r["gemm"] for rs in runs.values() for r in rs]
    m = cfg.model
    first = args.variants.split(",")[0]  # speed-up: each row over its mixer's first listed row (same jobs)
    lines = [f"# Training step on CPU: {args.dataset}, preset `{args.preset}`", "",
             "Generated by `scripts/bench_train_step.py` "
             f"(`{' '.join(sys.argv[1:]) or 'defaults'}`); never edited by hand.", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} "
             f"thread(s) per process; torch {torch.__version__}, fp32; git {git_sha()}. Model: d_model {m.d_model}, "
             f"{m.n_heads} heads, "
             f"max_len {cfg.data.max_len}, vocab {rows[0][-1]['vocab']}, batch {cfg.task.batch_size}; {args.warmup} "
             f"warm-up + {args.steps} timed steps of the epoch's first batches (same seed for every row); every row "
             f"measured {args.repeats}x in fresh processes, the rows interleaved: the median run is shown, with the "
             "range of tokens/s and of % of GEMM over the repeats. jobs = how many identical processes ran the row at "
             "once (2 jobs x 1 thread is how the cpu stages train): the median and ranges are over all of them, each "
             "against the GEMM timed in its own process.", "",
             "GEMM = the rate of a 2048² fp32 matmul in the row's own process, the mean of one measurement right "
             f"before and one right after the row ({min(gemms):.0f}-{max(gemms):.0f} GFLOP/s over the rows: this "
             "shared machine's speed drifts, so each row is compared with its own). GFLOP/s = FLOPs of the step as "
             "executed (FlopCounterMode: matmul/attention FLOPs of forward + backward, padding included) / step "
             "time; 'fwd+bwd' leaves out collate and the optimizer.", "",
             f"| mixer | step | jobs | tokens/s (real) | range | speed-up vs {first} | padded | ms collate | "
             "ms fwd+bwd | ms optimizer | "
             "GFLOP/s | GEMM GFLOP/s | % of GEMM | range | % of GEMM (fwd+bwd) | params (embedding) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    base = {(mx, n): r["tokens_per_s"] for mx, b, n, r in rows if b == first}
    for mixer, batching, n, r in rows:
        sp = f"{r['tokens_per_s'] / base[mixer, n]:.2f}x" if (mixer, n) in base else "—"
        lo, hi = r["range"]
        lines.append(f"| {mixer} | {batching} | {n} | {r['tokens_per_s']:.0f} | {lo:.0f}-{hi:.0f} | {sp} | "
                     f"{r['pad_measured']:.1%} | "
                     f"{r['ms_collate']:.0f} | {r['ms_fwd_bwd']:.0f} | {r['ms_opt']:.0f} | {r['gflops']:.1f} | "
                     f"{r['gemm']:.0f} | {r['gflops'] / r['gemm']:.0%} | "
                     f"{r['pct_range'][0]:.0%}-{r['pct_range'][1]:.0%} | {r['gflops_fb'] / r['gemm']:.0%} | "
                     f"{r['params'] / 1e6:.2f}M ({r['embed_params'] / 1e6:.2f}M) |")
    profiled = [(mixer, r) for mixer, b, n, r in rows if "profile" in r and n == levels[0]]
    if profiled:
        lines += ["", "## Where the step's time goes (torch.profiler, the median run of each profiled row)", "",
                  f"The `{PROFILED}` rows, profiled over {args.steps} more steps of the same batches in the same "
                  f"process. matmul = {', '.join(o.replace('aten::', '') for o in MATMUL_OPS)} and torch's fused "
                  "attention (scaled_dot_product_*; their profiled self time); matmul share = that time over the "
                  "unprofiled step above (collate + forward + backward + optimizer); matmul rate = the step's "
                  "FLOPs (the table above: FlopCounterMode, all of them in "
                  "matmuls and attention) over that time. The step's % of GEMM is the product of share and rate / "
                  "GEMM, so a goal of 50% of GEMM needs a matmul share of at least 50% / (rate / GEMM): fewer or "
                  "fused elementwise passes raise the share, wider layers the rate. Other ops: their share of the "
                  "profiled time (the profiler's per-op overhead inflates the many small ones).", "",
                  "| mixer | matmul s/step | matmul share | matmul GFLOP/s | matmul rate / GEMM | share needed for "
                  "50% of GEMM | largest other ops (share of profiled time) |",
                  "|---|---:|---:|---:|---:|---:|---|"]
        for mixer, r in profiled:
            p = r["profile"]
            step_s = (r["ms_collate"] + r["ms_fwd_bwd"] + r["ms_opt"]) / 1e3
            mm_rate = r["gflops"] * step_s / p["mm_s"]  # GFLOP per step / matmul seconds per step
            top = ", ".join(f"{k} {v:.0%}" for k, v in p["top"])
            lines.append(f"| {mixer} | {p['mm_s']:.3f} | {p['mm_s'] / step_s:.0%} | {mm_rate:.0f} | "
                         f"{mm_rate / r['gemm']:.0%} | {min(1.0, 0.5 * r['gemm'] / mm_rate):.0%} | {top} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:  # the table, and beside it every repeat's measurements (the table can be checked against them)
        out = Path(args.out)
        out.write_text(text)
        record = {"command": sys.argv[1:],
                  "runs": [{"mixer": mx, "step": b, "jobs": n, "repeats": rs} for (mx, b, n), rs in runs.items()]}
        out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
