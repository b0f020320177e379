"""Small shared utilities: seeding, atomic writes, run provenance (git sha, device, versions)."""
from __future__ import annotations

import base64
import errno
import json
import os
import platform
import random
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def atomic_path(path: str | os.PathLike, *, directory: bool = False, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temp path next to ``path``; on a clean exit ``os.replace`` it onto ``path``, on an error delete it.

    The project's one temp-file + rename: readers (and concurrent sweep jobs) never see a half-written file or folder.
    The yielded path is a unique hidden name in the same folder (``.<name>.<pid>.<random><suffix>``), so the rename
    never crosses a file system. For a file it does not exist yet (the writer creates it: ``open``, ``torch.save``,
    ``savefig``, ...); a second writer's replace simply wins. With ``directory=True`` it is an empty folder; when
    ``path`` is already a non-empty folder (another job finished first) that one is kept and the temp folder removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")
    if directory:
        tmp.mkdir()

    def discard() -> None:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)

    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as err:
            if not (directory and path.is_dir() and err.errno in (errno.ENOTEMPTY, errno.EEXIST)):
                raise
            discard()  # another writer's complete folder is already in place
    except BaseException:
        discard()
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


HEAP_MAX_BYTES = 1 << 30  # allocations up to 1 GiB come from the heap (keep_cpu_memory)
_HEAP = {"kept": False}


def keep_cpu_memory() -> bool:
    """Let glibc reuse freed CPU tensor memory instead of returning it to the kernel (a process-wide setting; True if
    applied, False off glibc or with ``FASTFORMER_SYSTEM_MALLOC=1``; numerics unchanged).

    glibc serves every allocation above its mmap threshold (dynamic, at most 32 MiB) with a fresh ``mmap`` and frees it
    with ``munmap``, so each large activation of a training step costs a page fault per 4 KiB and the kernel's zeroing
    of it: on this project's 2-core CPU a 33 MiB ``x * x`` took 14.5 ms against 2.1 ms into a preallocated output.
    Raising the mmap threshold to 1 GiB and never trimming the heap (``mallopt``, the allocator tuning PyTorch's CPU
    performance guide gets from jemalloc/tcmalloc) brings it to 3-5 ms; results/train_step_cpu.md has the whole step
    before and after. The price: the process keeps its peak resident memory until it exits.
    """
    if _HEAP["kept"]:
        return True
    if os.environ.get("FASTFORMER_SYSTEM_MALLOC") == "1" or platform.system() != "Linux":
        return False
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: nothing to tune
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # <malloc.h>
    _HEAP["kept"] = bool(mallopt(m_mmap_threshold, ctypes.c_int(HEAP_MAX_BYTES))
                         and mallopt(m_trim_threshold, ctypes.c_int(2**31 - 1)))
    return _HEAP["kept"]


def resolve_device(name: str, *, key: str = "trainer.device") -> torch.device:
    """``auto`` -> cuda when available, else cpu; ``cpu`` / ``cuda`` / ``cuda:N`` as given.

    ``key`` is the config key the value came from (``trainer.device``, or ``device`` in configs/bench.yaml): every error
    is one line naming it and the fix, e.g. ``trainer.device='cuda' but CUDA is not available here; use
    trainer.device=cpu (or trainer.device=auto)``.
    """
    name = str(name).strip()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        dev = None
    if dev is None or dev.type not in ("cpu", "cuda"):
        raise ValueError(f"{key}={name!r} is not cpu, cuda, cuda:N or auto")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"{key}={name!r} but CUDA is not available here; use {key}=cpu (or {key}=auto)")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise RuntimeError(f"{key}={name!r} but only {torch.cuda.device_count()} CUDA device(s) are visible; "
                               f"use {key}=cuda:0 (or check CUDA_VISIBLE_DEVICES)")
    return dev


def git_sha(short: bool = True, path: str | os.PathLike | None = None) -> str:
    """Commit of the checkout at ``path`` (default: this project), e.g. ``abc1234``, or ``abc1234+dirty`` when tracked
    files have uncommitted changes (``git status --porcelain --untracked-files=no``; new untracked files do not count,
    nor do the generated outputs under ``results/`` and ``logs/``: rebuilding one table must not mark the code of the
    next one dirty).

    ``unknown`` when git is not installed, ``path`` is not in a git checkout, or it has no commit yet. When only the
    status check fails the sha gets ``+dirty`` too (a run never claims a clean tree that was not checked).
    ``--no-optional-locks``: a run never takes the index lock, so it cannot make a concurrent ``git commit`` in the
    same checkout fail.
    """
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "--no-optional-locks", *args], cwd=path if path is not None else PROJECT_ROOT,
                              capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", *(["--short"] if short else []), "--verify", "-q", "HEAD")
        sha = head.stdout.strip()
        if head.returncode != 0 or not sha:
            return "unknown"
        status = git("status", "--porcelain", "--untracked-files=no", "--", ":(top,exclude)results",
                     ":(top,exclude)logs")
        return sha + ("+dirty" if status.returncode != 0 or status.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError, ValueError):  # no git binary / missing folder / timeout
        return "unknown"


def device_name(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"CPU ({cpu}, {torch.get_num_threads()} threads)"


def count_params(model: torch.nn.Module) -> int:
    """Number of distinct trainable parameters (shared modules counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters() if p.requires_grad}.values())


def _progress_mode(file) -> str:
    """``tty`` (a live tqdm bar), ``log`` (plain lines at a few milestones) or ``off``; FASTFORMER_PROGRESS forces
    it."""
    mode = os.environ.get("FASTFORMER_PROGRESS", "auto").lower()
    if mode in ("tty", "log", "off"):
        return mode
    try:
        return "tty" if file.isatty() else "log"
    except (AttributeError, ValueError):  # closed or file-like without isatty
        return "log"


def progress(iterable=None, *, total: int | float | None = None, desc: str | None = None, disable: bool = False,
             step_pct: float = 10.0, interval_s: float = 60.0, file=None, **kwargs):
    """The project's one progress bar: tqdm on a terminal; off a terminal one plain line per ``step_pct`` % done.

    Off a terminal (stderr redirected to train.log, CI logs) tqdm would write every carriage-return frame; instead a
    line such as ``epoch 1/3:  30%|###       | 3/10 [00:01<00:02, 4.2it/s, loss=0.6931]`` is written each time
    another ``step_pct`` % is done (every ``interval_s`` seconds when the total is unknown), ending with the 100 %
    line. ``FASTFORMER_PROGRESS=tty|log|off`` overrides the detection. Other keywords go to tqdm.
    """
    import sys

    file = file if file is not None else sys.stderr
    mode = _progress_mode(file)
    if mode == "tty":
        from tqdm.auto import tqdm
        return tqdm(iterable, total=total, desc=desc, disable=disable, file=file, **kwargs)
    from tqdm.std import tqdm as std_tqdm

    class LogProgress(std_tqdm):
        def display(self, msg=None, pos=None):
            n, total_ = self.n, self.total
            if total_:
                pct = 100.0 * n / total_
                if n <= 0 or (pct < self._next_pct and n < total_) or n == self._last_n:
                    return True
                while self._next_pct <= pct:
                    self._next_pct += step_pct
            else:
                now = self._time()
                if n <= 0 or n == self._last_n or now - self._last_t < interval_s:
                    return True
                self._last_t = now
            self._last_n = n
            line = self.__str__() if msg is None else msg
            if line:
                self.fp.write(line.replace("\r", "").rstrip() + "\n")
                self.fp.flush()
            return True

    class Lines:  # drops tqdm's bare "\r" / "\n" cursor writes (close, clear): only whole lines reach the log
        def __init__(self, fp):
            self.fp = fp

        def write(self, s):
            if s.strip():
                self.fp.write(s)

        def flush(self):
            getattr(self.fp, "flush", lambda: None)()

    LogProgress._next_pct, LogProgress._last_n, LogProgress._last_t = step_pct, -1, 0.0
    file = Lines(file)
    kwargs.setdefault("ascii", True)
    kwargs.setdefault("dynamic_ncols", False)
    return LogProgress(iterable, total=total, desc=desc, disable=disable or mode == "off", file=file, mininterval=0,
                       miniters=1, ncols=kwargs.pop("ncols", 80), **kwargs)


@contextmanager
def library_progress(file=None) -> Iterator[bool]:
    """Hugging Face ``datasets`` / ``huggingface_hub`` progress bars (downloads, split generation, Parquet export)
    off a terminal: they are tqdm bars this repo does not draw, so where :func:`progress` would write plain lines
    (``FASTFORMER_PROGRESS=log|off`` or stderr not a TTY) they are switched off for the block and restored after.
    Yields True when they were switched off (the caller then prints its own start/end lines)."""
    import sys

    quiet = _progress_mode(file if file is not None else sys.stderr) != "tty"
    undo = []
    if quiet:
        for mod in ("datasets", "huggingface_hub.utils"):
            try:
                lib = __import__(mod, fromlist=["disable_progress_bars"])
            except ImportError:
                continue
            if not lib.are_progress_bars_disabled():
                lib.disable_progress_bars()
                undo.append(lib)
    try:
        yield quiet
    finally:
        for lib in undo:
            lib.enable_progress_bars()


def item_record(index: np.ndarray, correct: np.ndarray, n: int) -> dict | None:
    """Per-item correctness of a split in dataset order, packed: ``{"n": n, "correct": base64(packbits)}`` (5,000
    items -> 836 characters); None when the records lack indices or do not cover the split exactly once."""
    if (index < 0).any() or len(index) != n or len(np.unique(index)) != n:
        return None
    ordered = np.zeros(n, dtype=bool)
    ordered[index] = correct
    return {"n": int(n), "correct": base64.b64encode(np.packbits(ordered).tobytes()).decode("ascii")}


def decode_items(record: dict) -> np.ndarray:
    """The bool vector an :func:`item_record` packed."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(record["correct"]), dtype=np.uint8))
    return bits[: int(record["n"])].astype(bool)
