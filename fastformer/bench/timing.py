"""Timing and peak-memory measurement of one mixer call (inference or training) at one grid point.

* GPU: CUDA events around each call (``torch.cuda.synchronize()`` before the start event, ``end.synchronize()``
  after), peak memory = ``torch.cuda.max_memory_allocated()`` during the timed calls minus the memory allocated before
  them (parameters, input, output gradient).
* CPU: ``time.perf_counter`` around each call; peak memory = increase of the process's peak resident set size
  (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``) over the resident size before the timed calls. glibc is
  told (``mallopt(M_MMAP_THRESHOLD, 1 MiB)``) to serve every block >= 1 MiB with its own mmap, so freed activations go
  back to the OS and the RSS tracks live tensors; without Linux ``/proc`` the memory column is left empty.

A point runs ``warmup`` calls; the last warm-up call estimates the steady-state time (GPU time on CUDA, process CPU
time on CPU, so that other jobs on a shared CPU do not turn points into timeouts). If it exceeds ``budget_s`` the
point is a timeout; otherwise ``min(iters, budget_s // estimate)`` (at least one) timed calls follow, and the median is
reported. Out-of-memory errors become status ``"OOM"``; nothing is dropped.
"""
from __future__ import annotations

import ctypes
import gc
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

MODES = ("inference", "training")
_PROC_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def configure_cpu_allocator() -> bool:
    """Make glibc mmap (and unmap on free) every allocation >= 1 MiB so RSS follows live tensor memory."""
    try:
        return bool(ctypes.CDLL("libc.so.6").mallopt(-3, 1 << 20))  # -3 = M_MMAP_THRESHOLD (fixes the threshold)
    except (OSError, AttributeError):
        return False


def _proc_kib(key: str) -> int | None:
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class PeakMemory:
    """Context manager measuring the peak memory increase (MiB) of the code inside it on ``device``."""

    def __init__(self, device: torch.device):
        self.device, self.peak_mib = device, float("nan")

    def __enter__(self) -> PeakMemory:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            try:
                _CLEAR_REFS.write_text("5")  # "5" resets the peak RSS (VmHWM) to the current RSS
                self._base = _proc_kib("VmRSS")
            except OSError:
                self._base = None
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        elif self._base is not None:
            hwm = _proc_kib("VmHWM")
            self.peak_mib = float("nan") if hwm is None else max(hwm - self._base, 0) / 1024


def memory_method(device: torch.device) -> str:
    if device.type == "cuda":
        return "torch.cuda.max_memory_allocated() during the timed calls minus memory allocated before them"
    return ("peak RSS increase over the timed calls (Linux VmHWM reset via /proc/self/clear_refs; glibc mmap threshold "
            "fixed at 1 MiB so freed tensors leave the RSS)")


def time_call(fn: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) for one call of ``fn`` with proper synchronisation. Wall time comes from
    CUDA events on GPU and ``time.perf_counter`` on CPU; the CPU time (``time.process_time``, all threads of this
    process) is reported on CPU only (NaN on GPU): with one thread it is insensitive to other jobs on a shared
    machine."""
    if device.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize(device)
        start.record()
        fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3, float("nan")
    c0, t0 = time.process_time(), time.perf_counter()
    fn()
    return time.perf_counter() - t0, time.process_time() - c0


def make_step(mixer: torch.nn.Module, x: torch.Tensor, *, mode: str, autocast_dtype: torch.dtype | None,
              grad_input: bool) -> Callable[[], None]:
    """One inference call (``no_grad``, eval) or one training call (forward + backward with a fixed random output
    gradient, train mode; gradients reach the parameters and, with ``grad_input``, ``x`` as for a non-first layer)."""
    if mode not in MODES:
        raise ValueError(f"bench mode {mode!r} is not one of {list(MODES)}")
    amp = (torch.autocast(x.device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext())
    if mode == "inference":
        mixer.eval()
        x = x.detach()

        def infer() -> None:
            with torch.no_grad(), amp:
                mixer(x)
        return infer
    mixer.train()
    x = x.detach().requires_grad_(grad_input)
    params = [p for p in mixer.parameters() if p.requires_grad]
    gouts: dict[torch.dtype, torch.Tensor] = {}

    def train() -> None:
        for p in params:  # fresh gradients each call (as after optimizer.zero_grad(set_to_none=True))
            p.grad = None
        x.grad = None
        with amp:
            y = mixer(x)  # (B, N, D)
        if y.dtype not in gouts:  # fixed random output gradient, same for every call
            g = torch.Generator(device=y.device).manual_seed(1)
            gouts[y.dtype] = torch.randn(y.shape, generator=g, device=y.device, dtype=torch.float32).to(y.dtype)
        y.backward(gouts[y.dtype])
    return train


@dataclass
class Measurement:
    status: str  # "ok" | "OOM" | "timeout: > B s" | "error: ..."
    seconds: float = float("nan")  # median wall seconds per call
    cpu_seconds: float = float("nan")  # median process CPU seconds per call (CPU device only)
    iters: int = 0
    peak_mem_mib: float = float("nan")
    note: str = ""


def is_oom(err: BaseException) -> bool:
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    msg = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in msg or "can't allocate memory" in msg)


def failure_status(err: BaseException) -> str:
    """``"OOM"`` for out-of-memory errors, else ``"error: <Type>: <first line of the message>"``."""
    if is_oom(err):
        return "OOM"
    msg = (str(err).strip().splitlines() or [""])[0][:160]
    return f"error: {type(err).__name__}: {msg}" if msg else f"error: {type(err).__name__}"


def measure(step: Callable[[], None], device: torch.device, *, warmup: int, iters: int,
            budget_s: float) -> Measurement:
    """Warm up, check the budget, time up to ``iters`` calls; OOM and over-budget points become statuses.

    The budget is compared with the GPU time of a call on CUDA and with its process CPU time on CPU (one thread: the
    compute the call needs, whatever else runs on the machine; the wall time is still what is reported)."""
    if warmup < 1 or iters < 1:
        raise ValueError(f"bench warmup={warmup} and iters={iters} must both be >= 1")
    try:
        est = float("nan")
        for _ in range(warmup):
            wall, cpu = time_call(step, device)
            est = wall if device.type == "cuda" else cpu
        if not est <= budget_s:
            what = "GPU" if device.type == "cuda" else "CPU"
            return Measurement(f"timeout: > {budget_s:g} s", note=f"one warm-up call took {est:.3g} s {what} time"
                                                                  + ("" if device.type == "cuda" else
                                                                     f" ({wall:.3g} s wall)"))
        n = max(1, min(iters, int(budget_s // est) if est > 0 else iters))
        with PeakMemory(device) as mem:
            times = [time_call(step, device) for _ in range(n)]
        wall = [t for t, _ in times]
        return Measurement("ok", statistics.median(wall), statistics.median(c for _, c in times), n, mem.peak_mib,
                           note=f"wall min {min(wall):.4g} s, max {max(wall):.4g} s")
    except Exception as err:  # noqa: BLE001 -- every failure is recorded as a row, never dropped
        status = failure_status(err)
    # cleanup outside the except block so the traceback's frames (holding activations) are released first
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return Measurement(status)
