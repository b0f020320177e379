"""Cost of the new probe stages from a few training steps: ms per step (and per evaluation sequence) of every row at
every point, and the hours a sweep of them would take on this machine.

    python scripts/bench_probe_causal.py                       # causal MQAR (probes_causal), 20 steps, 1 thread
    python scripts/bench_probe_causal.py --stage probes_length # the bidirectional length axis
    python scripts/bench_probe_causal.py --steps 5 --rows transformer,fastformer --points L64

Builds each task exactly as scripts/train.py does (Hydra composition of the experiment + the sweep's overrides, with
a small ``data.n_train``: the cost of a step does not depend on it), runs ``--warmup`` untimed and ``--steps`` timed
training steps (forward, backward, optimizer step) and one timed evaluation batch. Estimated hours per run = epochs x
(steps per epoch x step time + evaluated sequences x time per sequence); the upper bound assumes no run stops early.
Not a test: timings depend on the machine and on what else runs on it.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
import torch  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402

from fastformer.tasks import build_task  # noqa: E402
from fastformer.tasks.base import build_loader, to_device  # noqa: E402

# stage -> (rows, points: name -> overrides, the sweep's fixed overrides, epochs, training sequences per epoch,
#           evaluated sequences per epoch, lrs per point, seeds)
STAGES = {
    "probes_causal": (
        ["transformer", "fastformer", "fastformer_official", "linear_transformer", "pooling_baseline"],
        {"L64": ["data=probe_mqar_zoology_L64"], "L128": ["data=probe_mqar_zoology_L128"],
         "L256": ["data=probe_mqar_zoology_L256"]},
        ["model.d_model=64", "model.n_heads=4", "model.encoder.use_ffn=false"], "probe_causal",
        64, 100_000, 3_000, 4, 3),
    "probes_length": (
        ["transformer", "fastformer", "fastformer_official", "pooling_baseline", "linear_transformer"],
        {"L64": ["data.seq_len=64"], "L128": ["data.seq_len=128"], "L256": ["data.seq_len=256"]},
        ["data=probe_mqar", "data.params.n_pairs=4", "model.d_model=64", "model.n_heads=4",
         "model.encoder.use_ffn=false", "model.encoder.token_shift=true"], "probe",
        4, 24_000, 1_000, 1, 3),
}


def build(exp: str, overrides: list[str]):
    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={exp}", "preset=quick", "logger=none", "data.n_train=640",
                                          "data.n_eval=500", *overrides])
    task = build_task(cfg)
    task.setup()
    model = task.build_model()
    opt = hydra.utils.instantiate(cfg.optimizer)(params=list(model.parameters()))
    return cfg, task, model, opt


def time_row(exp: str, overrides: list[str], steps: int, warmup: int) -> tuple[float, float]:
    """-> (seconds per training step, seconds per evaluated sequence)."""
    cfg, task, model, opt = build(exp, overrides)
    batches = [to_device(b, "cpu") for b in build_loader(task, "train")]
    model.train()
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        loss, _ = task.training_step(model, batches[i % len(batches)])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    step = (time.perf_counter() - t0) / steps
    model.eval()
    with torch.no_grad():
        t1 = time.perf_counter()
        task.evaluate(model, "val")
        per_seq = (time.perf_counter() - t1) / len(task.dataset("val"))
    return step, per_seq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", default="probes_causal", choices=list(STAGES))
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rows", default=None, help="comma-separated subset of the stage's rows")
    ap.add_argument("--points", default=None, help="comma-separated subset of the stage's points (L64,L128,L256)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows, points, fixed, prefix, epochs, n_train, n_eval, n_lr, n_seeds = STAGES[args.stage]
    rows = args.rows.split(",") if args.rows else rows
    pts = args.points.split(",") if args.points else list(points)
    print(f"# {args.stage}: {args.steps} steps of batch 64 after {args.warmup} warm-up, {args.threads} thread(s), "
          f"torch {torch.__version__}")
    print("| point | row | ms/step | ms/eval seq | h/epoch | h/run (max epochs) | runs | h (all, upper bound) |")
    print("|---|---|---|---|---|---|---|---|")
    total = 0.0
    for pt in pts:
        for row in rows:
            step, per_seq = time_row(f"{prefix}/{row}", fixed + points[pt], args.steps, args.warmup)
            h_epoch = (n_train / 64 * step + 2 * n_eval * per_seq) / 3600
            runs = n_lr * n_seeds
            total += runs * epochs * h_epoch
            print(f"| {pt} | {row} | {step * 1e3:.1f} | {per_seq * 1e3:.2f} | {h_epoch:.3f} | {epochs * h_epoch:.2f} "
                  f"| {runs} | {runs * epochs * h_epoch:.1f} |", flush=True)
    print(f"\nTotal (every run to its last epoch, one job at a time): {total:.1f} h")


if __name__ == "__main__":
    main()
