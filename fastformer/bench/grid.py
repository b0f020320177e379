"""The benchmark grid: which mixers (``name`` or ``name[impl]``), which lengths, batch sizes, and the run loop."""
from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from fastformer.bench.timing import MODES, Measurement, failure_status, make_step, measure
from fastformer.mixers import MIXERS, build_mixer, mixer_kwargs

log = logging.getLogger(__name__)

#: Figure 2's x-axis: sequence length N (batch = 65,536 / N in the paper)
PAPER_LENGTHS = (128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536)
#: curve order of the paper's legend; other registered mixers follow alphabetically
PAPER_ORDER = ("fastformer", "longformer", "linformer", "bigbird", "linear_transformer", "transformer",
               "poolingformer")
_SPEC = re.compile(r"^([A-Za-z0-9_]+)(?:\[([A-Za-z0-9_+-]+)\])?$")


@dataclass(frozen=True)
class MixerSpec:
    label: str  # as written by the user: "fastformer" or "fastformer[compile]"
    name: str  # registry key
    kwargs: Mapping[str, Any]  # options passed to build_mixer (max_len is added per length)


#: implementation variants timed by default beside their mixer (rows read "unavailable: ..." where they cannot run)
DEFAULT_VARIANTS = {"fastformer": ("fastformer[triton]",)}


def default_mixers() -> list[str]:
    """Every registered mixer, paper legend order first, each followed by its ``DEFAULT_VARIANTS``."""
    names = [n for n in PAPER_ORDER if n in MIXERS] + sorted(n for n in MIXERS if n not in PAPER_ORDER)
    return [label for n in names for label in (n, *DEFAULT_VARIANTS.get(n, ()))]


def unavailable(spec: MixerSpec, device: torch.device) -> str | None:
    """Why ``spec`` cannot run on ``device`` (a row status), or None: the fused Fastformer needs CUDA + triton."""
    if spec.kwargs.get("impl") != "triton":
        return None
    from fastformer.kernels import TRITON_AVAILABLE
    if device.type != "cuda":
        return "unavailable: needs CUDA"
    return None if TRITON_AVAILABLE else "unavailable: triton not installed"


def parse_specs(specs: Iterable[str] | str | None, mixer_options: Mapping[str, Mapping[str, Any]]) -> list[MixerSpec]:
    """``["fastformer", "longformer[hf]"]`` -> specs with their kwargs (``bench.yaml: mixer_kwargs.<name>``,
    plus ``impl=<variant>`` for ``name[variant]``). ``None`` = every registered mixer with its bench options."""
    explicit = specs is not None
    if isinstance(specs, str):
        specs = [s for s in re.split(r"[\s,]+(?![^\[]*\])", specs) if s]
    out = []
    for spec in (default_mixers() if specs is None else list(specs)):
        m = _SPEC.match(str(spec).strip())
        if not m:
            raise ValueError(f"bench mixers entry {spec!r} is not 'name' or 'name[impl]' (e.g. fastformer[compile])")
        name, impl = m.groups()
        if name not in MIXERS:
            raise KeyError(f"bench mixers entry {spec!r}: unknown mixer {name!r}; registered: {sorted(MIXERS)}")
        kwargs = dict(mixer_options.get(name) or {})
        if name not in mixer_options:
            log.warning("mixer %r has no entry in bench.yaml mixer_kwargs: benchmarking its defaults", name)
        if impl is not None:
            if "impl" not in mixer_kwargs(name):
                raise ValueError(f"bench mixers entry {spec!r}: mixer {name!r} has no impl= option "
                                 f"(its options: {mixer_kwargs(name)}); drop the [{impl}]")
            kwargs["impl"] = impl
        out.append(MixerSpec(str(spec).strip(), name, kwargs))
    if explicit and not out:
        raise ValueError("bench mixers is an empty list; use null for every registered mixer")
    return out


def build(spec: MixerSpec, *, d_model: int, n_heads: int, seq_len: int) -> torch.nn.Module:
    """Build ``spec`` for sequence length ``seq_len`` (``max_len=seq_len`` where the mixer takes it, e.g. Linformer)."""
    kwargs = dict(spec.kwargs)
    if "max_len" in mixer_kwargs(spec.name):
        kwargs["max_len"] = seq_len
    try:
        return build_mixer(spec.name, d_model=d_model, n_heads=n_heads, **kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"bench.yaml mixer_kwargs.{spec.name} = {dict(spec.kwargs)} does not build: {err}") from err


def batch_size(seq_len: int, tokens_per_batch: int) -> int:
    """Paper: batch = 65,536 / N; at least one sequence when N > tokens_per_batch."""
    return max(1, tokens_per_batch // seq_len)


def resolve_lengths(lengths: Sequence[int] | None, max_length: int | None) -> list[int]:
    if lengths is None:
        lengths = [n for n in PAPER_LENGTHS if max_length is None or n <= max_length]
    lengths = sorted(int(n) for n in lengths)
    if not lengths or lengths[0] < 1:
        raise ValueError(f"bench lengths={lengths} must be a non-empty list of positive ints (or null + max_length)")
    return lengths


@dataclass
class Row:
    mixer: str  # label, e.g. "fastformer[compile]"
    mode: str
    seq_len: int
    batch_size: int
    status: str
    seconds: float = float("nan")  # median wall seconds per layer per batch
    cpu_seconds: float = float("nan")  # median process CPU seconds (CPU runs only)
    tokens_per_s: float = float("nan")
    peak_mem_mib: float = float("nan")
    iters: int = 0
    note: str = ""
    kwargs: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GridConfig:
    device: torch.device
    autocast_dtype: torch.dtype | None
    tokens_per_batch: int
    lengths: list[int]
    modes: list[str]
    d_model: int = 256
    n_heads: int = 16
    warmup: int = 1
    iters: int = 10
    budget_s: float = 5.0
    grad_input: bool = True
    seed: int = 0
    on_row: Callable[[Row], None] | None = field(default=None, repr=False)
    deadline: float | None = None  # time.perf_counter() value: points not started by then read "skipped: deadline"


def run_grid(specs: Sequence[MixerSpec], cfg: GridConfig) -> list[Row]:
    """Time every spec x mode x length. After a timeout at length N, longer lengths of the same mixer and mode (and,
    after an inference timeout, training at >= N) are recorded as ``skipped: > budget`` without running."""
    bad = [m for m in cfg.modes if m not in MODES]
    if bad:
        raise ValueError(f"bench modes {bad} unknown; valid: {list(MODES)}")
    rows: list[Row] = []
    for spec in specs:
        over: dict[str, int] = {}  # mode -> first length that exceeded the budget in that mode
        for mode in [m for m in MODES if m in cfg.modes]:
            for n in cfg.lengths:
                b = batch_size(n, cfg.tokens_per_batch)
                row = Row(spec.label, mode, n, b, "", kwargs=_fmt_kwargs(spec.kwargs))
                # training costs more than inference, so an inference timeout at N also rules out training at >= N
                hit = [(over[m], m) for m in dict.fromkeys([mode, "inference"]) if m in over]
                if cfg.deadline is not None and time.perf_counter() > cfg.deadline:
                    row.status, row.note = "skipped: deadline", "the whole grid's time limit (deadline_s) was reached"
                elif hit and n >= min(hit)[0]:
                    row.status = "skipped: > budget"
                    row.note = f"{min(hit)[1]} exceeded the {cfg.budget_s:g} s budget at N={min(hit)[0]}"
                else:
                    res = _one_point(spec, mode, n, b, cfg)
                    row.status, row.seconds, row.cpu_seconds, row.iters, row.peak_mem_mib, row.note = (
                        res.status, res.seconds, res.cpu_seconds, res.iters, res.peak_mem_mib, res.note)
                    if res.status == "ok":
                        row.tokens_per_s = b * n / res.seconds
                    elif res.status.startswith("timeout"):
                        over[mode] = n
                log.info("%-24s %-9s N=%-6d B=%-4d %-22s %s", spec.label, mode, n, b, row.status,
                         f"{row.seconds * 1e3:.2f} ms" if row.status == "ok" else row.note)
                rows.append(row)
                if cfg.on_row is not None:
                    cfg.on_row(row)
    return rows


def _one_point(spec: MixerSpec, mode: str, n: int, b: int, cfg: GridConfig) -> Measurement:
    why = unavailable(spec, cfg.device)
    if why is not None:
        return Measurement(why)
    torch.manual_seed(cfg.seed)
    mixer = x = step = None
    try:
        mixer = build(spec, d_model=cfg.d_model, n_heads=cfg.n_heads, seq_len=n).to(cfg.device)
        g = torch.Generator(device=cfg.device).manual_seed(cfg.seed)
        # the paper's pseudo samples: random tokens with fixed (random, untrained) embeddings -> fixed random x
        x = torch.randn(b, n, cfg.d_model, generator=g, device=cfg.device)  # (B, N, D)
        step = make_step(mixer, x, mode=mode, autocast_dtype=cfg.autocast_dtype, grad_input=cfg.grad_input)
        return measure(step, cfg.device, warmup=cfg.warmup, iters=cfg.iters, budget_s=cfg.budget_s)
    except ValueError:
        raise  # configuration errors stop the run with their message
    except Exception as err:  # noqa: BLE001 -- e.g. OOM while building / allocating the input
        return Measurement(failure_status(err))
    finally:
        del mixer, x, step
        if cfg.device.type == "cuda":
            torch.cuda.empty_cache()


def _fmt_kwargs(kwargs: Mapping[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in kwargs.items())
