"""Exclusive run dirs: one run at a time writes into a run dir.

    lock = lock_run_dir(run_dir)   # RunDirBusyError (one line: the holder's pid and start time, what to do) if held
    ...                            # the run: checkpoints, metrics.json, failed.json
    lock.release()                 # (also released by the kernel when the process ends, even on kill -9)

The lock is ``fcntl.flock`` on ``<run_dir>/.lock``, a file that holds the holder's pid, host and start time. A lock
file left by a finished or killed run is not held, so the next run there (a resume) takes it at once. Two launches of
the same experiment therefore never share checkpoints or a metrics.json; the default single-run dir
(configs/hydra/default.yaml) is also unique per launch (seed + microsecond time), so they do not even meet.

A single run (``python scripts/train.py ...``) takes the lock in :class:`RunDirLockCallback` (``hydra.callbacks`` in
configs/hydra/default.yaml), before Hydra writes the run's ``.hydra/`` files and log, so a second run stops before it
has changed anything; ``train()`` (scripts/train.py) then finds the lock held by its own process. Multirun jobs (and
direct ``train(cfg, run_dir)`` calls) take it in ``train()``.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path
from typing import Any

from fastformer.errors import UserInputError

LOCK_NAME = ".lock"
_HELD: dict[str, RunDirLock] = {}  # resolved run dir -> this process's lock on it


class RunDirBusyError(UserInputError):
    """Another live process holds the run dir's lock."""


class RunDirLock:
    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    def release(self) -> None:
        if _HELD.get(str(self.path.parent.resolve())) is self:
            del _HELD[str(self.path.parent.resolve())]
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunDirLock:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info.get("pid"):
        return "another process (its pid is not written yet)"
    host = f" on {info['host']}" if info.get("host") and info["host"] != socket.gethostname() else ""
    return f"pid {info['pid']}{host}, started {info.get('started', '?')}"


def lock_run_dir(run_dir: str | os.PathLike) -> RunDirLock:
    """Take ``<run_dir>/.lock`` (creating the dir) or raise :class:`RunDirBusyError` naming the holder at once.

    When this process already holds it (taken by :class:`RunDirLockCallback`), returns a handle whose ``release``
    leaves it held (the callback releases it when the run ends)."""
    run_dir = Path(run_dir)
    held = _HELD.get(str(run_dir.resolve()))
    if held is not None:
        return _Borrowed(held.path, None)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise RunDirBusyError(
            f"run dir {run_dir} is in use by another run ({_holder(path)}; lock {path}); nothing was written. Wait "
            f"for that run to finish, or start this one in its own dir: hydra.run.dir=<new dir> (a resume of the "
            f"same run needs the other process to end first)") from None
    info = {"pid": os.getpid(), "host": socket.gethostname(),
            "started": _dt.datetime.now().astimezone().isoformat(timespec="seconds")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode() + b"\n", 0)
    lock = RunDirLock(path, fd)
    _HELD[str(run_dir.resolve())] = lock
    return lock


class _Borrowed(RunDirLock):
    def release(self) -> None:  # the owner releases it
        pass


try:  # Hydra is a dependency of the scripts; the lock itself does not need it
    from hydra.experimental.callback import Callback
except ImportError:  # pragma: no cover
    Callback = object


class RunDirLockCallback(Callback):
    """Hydra callback: a single run takes its run dir's lock before Hydra writes anything there. A busy dir ends the
    launch with one ERROR line and exit code 2 (as every bad input of scripts/train.py)."""

    def __init__(self) -> None:
        self.lock: RunDirLock | None = None

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        if int(os.environ.get("RANK", "0")) != 0:  # torchrun: rank 0 holds the dir every rank writes into
            return
        from omegaconf import OmegaConf
        run_dir = OmegaConf.select(config, "hydra.run.dir")
        try:
            self.lock = lock_run_dir(run_dir)
        except RunDirBusyError as err:
            now = _dt.datetime.now().strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
            print(f"[{now}][train][ERROR] - {err} [RunDirBusyError, before any work]", file=sys.stderr, flush=True)
            sys.exit(2)

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        if self.lock is not None:
            self.lock.release()
            self.lock = None
