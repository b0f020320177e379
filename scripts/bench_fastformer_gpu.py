"""GPU benchmark of the fused Fastformer (issue 7) beside SDPA, eager and torch.compile, in one run on one card.

    python scripts/bench_fastformer_gpu.py                       # -> results/gpu_fastformer_<card>.md
    python scripts/bench_fastformer_gpu.py --lengths 512,4096 --tokens 524288 --skip-e2e --profile

Part 1, token mixer only (projections included, no FFN), forward + backward with the input requiring grad (as for a
non-first layer), d=256, h=16, bf16 autocast: million tokens/s and ms per call for 524,288 and 65,536 tokens per
batch (batch = tokens / N) over N = 256 ... 32,768, for SDPA (the Transformer mixer), eager, torch.compile and the
fused kernels (``triton``: with its output rule; ``triton_gate`` / ``triton_fold``: each output path forced;
``--launch``: launch-rule overrides). Part 2, the classifier training step (embedding 50k x 256 ->
Encoder(2 layers, mixer, FFN 256, post-LN) -> AttentionPooling -> linear, Adam), batch 64, N = 512/1024/2048, ms per
step. Timing: CUDA events around each call after warm-up, synchronised, median; OOM recorded as OOM. Needs CUDA.
"""
from __future__ import annotations

import argparse
import datetime
import functools
import importlib.metadata
import platform
import re
import statistics
import sys
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from fastformer.bench.timing import failure_status, time_call  # noqa: E402
from fastformer.kernels import TRITON_AVAILABLE  # noqa: E402
from fastformer.mixers import build_mixer  # noqa: E402
from fastformer.mixers.fastformer import Fastformer  # noqa: E402
from fastformer.models import AttentionPooling, Encoder  # noqa: E402
from fastformer.utils import atomic_write_text, git_sha  # noqa: E402

IMPLS = ("sdpa", "eager", "compile", "triton", "triton_gate", "triton_fold")
#: triton = the fused path with its output rule (fold when N >= D/2); triton_gate / triton_fold force one output path:
#: the u kernel + transform GEMM + residual add, or one batched GEMM with k_glob folded into the weight


def parse_args(argv=None) -> argparse.Namespace:
    ints = lambda s: [int(v) for v in s.split(",") if v]  # noqa: E731
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=ints, default=[524288, 65536], help="tokens per batch (batch = tokens / N)")
    p.add_argument("--lengths", type=ints, default=[256, 512, 1024, 2048, 4096, 8192, 16384, 32768])
    p.add_argument("--e2e-lengths", type=ints, default=[512, 1024, 2048])
    p.add_argument("--e2e-batch", type=int, default=64)
    p.add_argument("--impls", default=",".join(IMPLS), help=f"subset of {IMPLS}")
    p.add_argument("--variant", default="official", choices=["official", "paper"], help="Fastformer variant")
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=16)
    p.add_argument("--dtype", default="bf16", choices=["bf16", "fp16", "fp32"], help="autocast dtype (fp32: none)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--launch", default="", help="extra fused rows with launch-rule overrides (fastformer/kernels/"
                   "launch.py), ';'-separated sets, e.g. 'block_n=32,dot=tf32,num_stages=3;num_warps=4'")
    p.add_argument("--graph", action="store_true", help="add CUDA-graph rows (eager+graph, triton+graph): the mixer's "
                   "forward and backward captured once and replayed, removing launch and Python overhead")
    p.add_argument("--skip-e2e", action="store_true")
    p.add_argument("--profile", action="store_true", help="append a torch.profiler table of one triton mixer call")
    p.add_argument("--out", type=Path, default=ROOT / "results")
    p.add_argument("--device", default="cuda", help="cuda (the benchmark) | cpu (a smoke test of this script only: "
                   "fused rows read 'unavailable: needs CUDA', timings are CPU wall clock)")
    return p.parse_args(argv)


def timed(step, warmup: int, iters: int, device: torch.device) -> tuple[str, float]:
    """('ok', median seconds) of ``step()`` -- CUDA events on a GPU, perf_counter on CPU (fastformer.bench's
    ``time_call``) -- or ('OOM' | 'error: ...', nan)."""
    try:
        for _ in range(warmup):
            step()
        return "ok", statistics.median(time_call(step, device)[0] for _ in range(iters))
    except Exception as err:  # noqa: BLE001 -- recorded in the table, never dropped
        status = failure_status(err)
    free(device)
    return status, float("nan")


def _raise(err: BaseException) -> None:
    raise err


def free(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()


def force_output_path(model: nn.Module, impl: str) -> nn.Module:
    """triton_gate / triton_fold: pin the fused Fastformer modules of ``model`` to one output path."""
    if impl in ("triton_gate", "triton_fold"):
        from fastformer.kernels.fastformer_fn import fastformer_triton_forward  # noqa: PLC0415 (needs triton)
        for mod in model.modules():
            if isinstance(mod, Fastformer):
                mod._core = functools.partial(fastformer_triton_forward, mod, fold=impl == "triton_fold")
    return model


def launch_rows(spec: str) -> dict[str, dict]:
    """--launch 'block_n=32,dot=tf32;num_warps=4' -> {'triton[block_n=32,dot=tf32]': {...}, ...}"""
    from fastformer.kernels.launch import parse_overrides  # noqa: PLC0415
    try:
        return {f"triton[{group}]": kw for group, kw in parse_overrides(spec)}
    except ValueError as e:
        raise SystemExit(f"--launch: {e}") from None


def with_launch(m: nn.Module, kw: dict) -> nn.Module:
    """pin the fused mixer ``m`` to the launch-rule overrides ``kw`` (its output rule unchanged)."""
    from fastformer.kernels.fastformer_fn import fastformer_triton_forward  # noqa: PLC0415 (needs triton)
    from fastformer.kernels.launch import Launch  # noqa: PLC0415
    m._core = functools.partial(fastformer_triton_forward, m, launch=Launch(**kw))
    return m


def base_impl(impl: str) -> str:
    return "triton" if impl.startswith("triton") else impl


def mixer(impl: str, a: argparse.Namespace) -> nn.Module:
    if impl == "sdpa":
        return build_mixer("transformer", d_model=a.d_model, n_heads=a.heads)
    m = build_mixer("fastformer", d_model=a.d_model, n_heads=a.heads, variant=a.variant, impl=base_impl(impl))
    return force_output_path(m, impl)


def mixer_step(m: nn.Module, B: int, N: int, a: argparse.Namespace, amp: torch.dtype | None):
    dev = torch.device(a.device)
    x = torch.randn(B, N, a.d_model, device=dev, requires_grad=True)
    gy = torch.randn(B, N, a.d_model, device=dev, dtype=amp or torch.float32)

    def step() -> None:
        for p in m.parameters():
            p.grad = None
        x.grad = None
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            y = m(x)
        y.backward(gy.to(y.dtype))
    return step


def graph_step(m: nn.Module, B: int, N: int, a: argparse.Namespace, amp: torch.dtype | None):
    """``mixer_step`` with the mixer's forward and backward captured as CUDA graphs (make_graphed_callables; autocast
    with its weight cache off, as graph capture requires)."""
    x = torch.randn(B, N, a.d_model, device="cuda", requires_grad=True)
    gy = torch.randn(B, N, a.d_model, device="cuda", dtype=amp or torch.float32)
    ac = dict(device_type="cuda", dtype=amp or torch.float32, enabled=amp is not None, cache_enabled=False)
    with torch.autocast(**ac):
        g = torch.cuda.make_graphed_callables(m, (x,))

    def step() -> None:
        for p in m.parameters():
            p.grad = None
        x.grad = None
        with torch.autocast(**ac):
            y = g(x)
        y.backward(gy.to(y.dtype))
    return step


class Classifier(nn.Module):
    """The paper's classification model: embedding -> Encoder -> attention pooling -> linear."""

    def __init__(self, mixer_name: str, mixer_kwargs: dict, N: int, a: argparse.Namespace, vocab=50000, classes=5):
        super().__init__()
        self.emb = nn.Embedding(vocab, a.d_model)
        self.enc = Encoder(d_model=a.d_model, n_heads=a.heads, n_layers=2, mixer=mixer_name, mixer_kwargs=mixer_kwargs,
                           d_ff=256, dropout=0.2, norm_position="post", max_len=N)
        self.pool, self.fc = AttentionPooling(a.d_model), nn.Linear(a.d_model, classes)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.enc(self.emb(tokens), mask), mask))  # (B, classes)


def e2e_step(impl: str, N: int, a: argparse.Namespace, amp: torch.dtype | None):
    name, kw = ("transformer", {}) if impl == "sdpa" else ("fastformer", {"variant": a.variant,
                                                                           "impl": base_impl(impl)})
    dev = torch.device(a.device)
    model = force_output_path(Classifier(name, kw, N, a), impl).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator(device=dev).manual_seed(0)
    B = a.e2e_batch
    tokens = torch.randint(0, 50000, (B, N), device=dev, generator=g)
    mask = torch.arange(N, device=dev)[None] < torch.randint(N // 2, N + 1, (B, 1), device=dev, generator=g)
    labels = torch.randint(0, 5, (B,), device=dev, generator=g)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(dev.type, dtype=amp or torch.float32, enabled=amp is not None):
            loss = nn.functional.cross_entropy(model(tokens, mask).float(), labels)
        loss.backward()
        opt.step()
    return step


def check_triton(a: argparse.Namespace, amp: torch.dtype | None) -> str:
    """one-shot agreement of both fused output paths with eager (output, relative L2) at B=4, N=1000 with padding."""
    torch.manual_seed(0)
    m_e = mixer("eager", a).cuda()
    x = torch.randn(4, 1000, a.d_model, device="cuda")  # only called on CUDA
    mask = torch.arange(1000, device="cuda")[None] < torch.tensor([[1000], [517], [1], [999]], device="cuda")
    errs = []
    for impl in ("triton_gate", "triton_fold"):
        m_t = mixer(impl, a).cuda()
        m_t.load_state_dict(m_e.state_dict())
        with torch.no_grad(), torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None):
            ye, yt = m_e(x, mask).float()[mask], m_t(x, mask).float()[mask]
        errs.append(f"{impl} {((yt - ye).norm() / ye.norm()):.2e}")
    return f"fused vs eager forward (B=4, N=1000, padded), relative L2 error: {', '.join(errs)}"


def main(argv=None) -> Path:
    a = parse_args(argv)
    dev = torch.device(a.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("bench_fastformer_gpu.py needs a CUDA GPU (torch.cuda.is_available() is False); "
                         "CPU numbers come from `make bench` (--device cpu only smoke-tests this script)")
    impls = [i for i in a.impls.split(",") if i]
    bad = sorted(set(impls) - set(IMPLS))
    if bad:
        raise SystemExit(f"--impls: unknown {bad}; choose from {list(IMPLS)}")
    launches = launch_rows(a.launch)
    fused = [i for i in impls if i.startswith("triton")] + list(launches)
    if fused and dev.type == "cuda" and not TRITON_AVAILABLE:
        raise SystemExit("--impls includes triton but the triton package is missing: pip install -e '.[triton]'")
    why_not = None if dev.type == "cuda" else "unavailable: needs CUDA"
    graphs = [f"{i}+graph" for i in ("eager", "triton") if a.graph and i in impls]
    amp = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[a.dtype]
    card = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({platform.processor() or 'unknown'})"
    sha = git_sha()
    triton_v = importlib.metadata.version("triton") if TRITON_AVAILABLE else "not installed"
    clock = "CUDA-event" if dev.type == "cuda" else "wall-clock"
    lines = [f"# Fused Fastformer on {card}", "",
             f"{datetime.date.today()}, git {sha}, torch {torch.__version__} (CUDA {torch.version.cuda}), "
             f"triton {triton_v}, autocast {a.dtype}, Fastformer variant={a.variant}, d={a.d_model}, "
             f"h={a.heads}; {clock} median of {a.iters} calls after {a.warmup} warm-up calls.", ""]
    a.out.mkdir(parents=True, exist_ok=True)
    path = a.out / f"gpu_fastformer_{re.sub(r'[^a-z0-9]+', '_', card.lower()).strip('_')}.md"

    def write(done: bool) -> None:  # atomic, after every row: a run stopped early keeps what it measured
        tail = [] if done else ["", "(incomplete: the run was still going)"]
        atomic_write_text(path, "\n".join(lines + tail) + "\n")

    if fused and why_not is None:
        lines += [check_triton(a, amp), ""]
    for T in a.tokens:
        lines += [f"## Mixer forward + backward, {T:,} tokens per batch: M tokens/s (ms per call)", "",
                  "| impl | " + " | ".join(f"N={N}" for N in a.lengths) + " |", "|---" * (len(a.lengths) + 1) + "|"]
        for impl in impls + list(launches) + graphs:
            cells = []
            for N in a.lengths:
                if T // N < 1:
                    cells.append("–")
                    continue
                if (impl in fused or impl in graphs) and why_not:
                    cells.append(why_not)
                    continue
                base = impl.removesuffix("+graph")
                m = (with_launch(mixer("triton", a), launches[impl]) if impl in launches else mixer(base, a)).to(dev)
                make = graph_step if impl in graphs else mixer_step
                try:
                    step = make(m, T // N, N, a, amp)
                except Exception as err:  # noqa: BLE001 -- e.g. a capture failure: recorded, never dropped
                    step = functools.partial(_raise, err)
                status, sec = timed(step, a.warmup, a.iters, dev)
                cells.append(f"{T // N * N / sec / 1e6:.1f} ({sec * 1e3:.2f})" if status == "ok" else status)
                print(f"[mixer] {impl} T={T} N={N}: {cells[-1]}", flush=True)
                del m
                free(dev)
            lines.append(f"| {impl} | " + " | ".join(cells) + " |")
            write(False)
        lines.append("")
    if not a.skip_e2e:
        lines += [f"## Classifier training step (batch {a.e2e_batch}, 2 layers, FFN 256, post-LN, Adam): ms per step",
                  "", "| impl | " + " | ".join(f"N={N}" for N in a.e2e_lengths) + " |",
                  "|---" * (len(a.e2e_lengths) + 1) + "|"]
        for impl in impls:
            cells = []
            for N in a.e2e_lengths:
                if impl in fused and why_not:
                    cells.append(why_not)
                    continue
                status, sec = timed(e2e_step(impl, N, a, amp), a.warmup, a.iters, dev)
                cells.append(f"{sec * 1e3:.2f}" if status == "ok" else status)
                print(f"[e2e] {impl} N={N}: {cells[-1]}", flush=True)
                free(dev)
            lines.append(f"| {impl} | " + " | ".join(cells) + " |")
            write(False)
        lines.append("")
    if a.profile and "triton" in impls and why_not is None:
        from torch.profiler import ProfilerActivity, profile  # noqa: PLC0415
        step = mixer_step(mixer("triton", a).to(dev), 524288 // 4096, 4096, a, amp)
        timed(step, a.warmup, 1, dev)
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize(dev)
        lines += ["## Profile: triton mixer fwd+bwd, N=4096, 524,288 tokens", "", "```",
                  prof.key_averages().table(sort_by="cuda_time_total", row_limit=20), "```", ""]
    write(True)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
