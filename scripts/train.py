"""Train and evaluate one configuration.   python scripts/train.py experiment=imdb/fastformer [key=value ...]

Multiruns: python scripts/train.py -m experiment=imdb/fastformer,imdb/transformer seed=1,2,3
Writes <run dir>/metrics.json (see fastformer/train/trainer.py); `main` returns the validation metric (task.monitor).
A run holds its run dir exclusively (fastformer/train/rundir.py): a second run there stops at once, naming the first.
Bad input (fastformer/errors.py UserInputError: an unknown or mistyped config key, a dataset file that is missing,
unreadable, in another encoding or format, a corrupt checkpoint, a NaN or diverging loss, a busy run dir) ends a single
run with one ERROR line -- the key or file, what was found, the fix -- and exit code 2, without a traceback; once the
run has started (after the config check and the run-dir lock) the failure is also written to the run's failed.json.
Inside a multirun the job fails as any other (failed.json, the sweep goes on).
"""
from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PROJECT_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT))

import hydra  # noqa: E402
from hydra.core.hydra_config import HydraConfig  # noqa: E402
from hydra.types import RunMode  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from fastformer.config_schema import ConfigError, validate_config  # noqa: E402
from fastformer.errors import UserInputError, one_line  # noqa: E402
from fastformer.tasks import build_task  # noqa: E402
from fastformer.train.distributed import DistContext, broadcast_object, setup_distributed  # noqa: E402
from fastformer.train.logging import NullLogger, build_logger  # noqa: E402
from fastformer.train.rundir import RunDirBusyError, lock_run_dir  # noqa: E402
from fastformer.train.trainer import Trainer, run_row  # noqa: E402
from fastformer.utils import atomic_write_json, git_sha, seed_everything  # noqa: E402

log = logging.getLogger("train")


def train(cfg: DictConfig, run_dir: str, dist: DistContext | None = None) -> dict:
    """Task (by ``task.name``) -> Trainer -> fit -> the W&B summary; always closes the logger (also when the run
    fails inside a multirun).

    ``dist`` is the process group and device that :func:`main` set up (set up here when called directly, as the
    tests do); it is passed down to the Trainer. The Trainer does the rest (loaders, checkpoints, best-epoch reload,
    outputs, prediction file, metrics.json); under DDP only rank 0 logs (W&B) and writes files."""
    validate_config(cfg)  # an unknown or mistyped key stops here, before any data is read
    metrics_path = Path(run_dir) / "metrics.json"
    if cfg.get("skip_finished") and metrics_path.exists():
        log.info("skipping %s: metrics.json exists (skip_finished=true)", run_dir)
        return json.loads(metrics_path.read_text())
    seed_everything(int(cfg.seed))
    dist = dist if dist is not None else setup_distributed(cfg.trainer.device)
    rank = dist.rank
    lock, busy = None, None
    if rank == 0:  # before anything is written: a second run in this dir must not touch the first one's files
        try:
            lock = lock_run_dir(run_dir)
        except RunDirBusyError as err:
            busy = str(err)
    busy = broadcast_object(busy)
    if busy:
        raise RunDirBusyError(busy)
    try:
        return _train_locked(cfg, run_dir, dist)
    finally:
        if lock is not None:
            lock.release()


def _train_locked(cfg: DictConfig, run_dir: str, dist: DistContext) -> dict:
    rank = dist.rank
    logger = build_logger(cfg, run_dir) if rank == 0 else NullLogger()
    try:
        metrics = Trainer(cfg, build_task(cfg), run_dir, logger, dist).fit()
        if metrics.get("test") is not None:
            logger.finalize(metrics, run_dir)  # the one writer of the W&B summary: metrics.json (+ artifacts)
    except BaseException as e:
        logger.finish(exit_code=1)
        if not isinstance(e, KeyboardInterrupt) and rank == 0:  # record the failure: sweeps and tables report it
            atomic_write_json(Path(run_dir) / "failed.json", {
                **run_row(cfg),
                "data_info": {k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
                              for k, v in cfg.data.items() if k in ("seq_len", "params")},  # the probes' axes
                "error": f"{type(e).__name__}: {e}".splitlines()[0][:500], "git_sha": git_sha()})
        raise
    logger.finish()
    if rank == 0:
        (Path(run_dir) / "failed.json").unlink(missing_ok=True)
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    """One run; returns the VALIDATION value of ``task.monitor`` at the best epoch (what a sweeper such as Optuna
    optimises: tuning on test would leak it), never a test metric."""
    OmegaConf.set_struct(cfg, True)
    dist = setup_distributed(cfg.trainer.device)  # once per run: the process group and this rank's device
    run_dir = broadcast_object(HydraConfig.get().runtime.output_dir)  # DDP: every rank uses rank 0's run dir
    try:
        metrics = train(cfg, run_dir, dist)
    except UserInputError as e:  # ConfigError, DataUnavailableError, a bad file, checkpoint, loss, busy run dir
        if HydraConfig.get().mode != RunMode.RUN:  # multirun: fail this job only
            raise
        # ConfigError (validate_config) and RunDirBusyError (the lock) come before any work and write no failed.json
        where = ("before any work" if isinstance(e, (ConfigError, RunDirBusyError))
                 else f"recorded in {Path(run_dir) / 'failed.json'}")
        log.error("%s [%s, %s]", one_line(e), type(e).__name__, where)
        sys.exit(2)
    log.info("test metrics: %s", {k: round(v, 4) for k, v in (metrics.get("test") or {}).items()})
    return (metrics.get("val") or {}).get(cfg.task.monitor)


if __name__ == "__main__":
    main()
