"""Experiment loggers: W&B (offline by default) or none. The results tables never depend on them (metrics.json)."""
from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


# metrics.json keys -> W&B summary keys (besides val/* at the best epoch and test/*)
_SUMMARY_KEYS = {"best_epoch": "best_epoch", "params": "params", "train_tokens_per_s": "perf/tokens_per_s",
                 "peak_mem_mb": "perf/peak_mem_mb", "peak_mem_kind": "perf/peak_mem_kind", "device": "device",
                 "precision": "precision", "torch": "torch", "git_sha": "git_sha", "wall_s": "perf/wall_s",
                 "train_s": "perf/train_s", "monitor": "monitor"}
RUN_ID_FILE = "wandb_run_id"  # in the run dir: a resumed run continues the same W&B run


def summary_from_metrics(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """The W&B summary of a finished run from its metrics.json: best-epoch val/*, test/*, params, perf, device."""
    out: dict[str, Any] = {f"val/{k}": v for k, v in (metrics.get("val") or {}).items()}
    out.update({f"test/{k}": v for k, v in (metrics.get("test") or {}).items()})
    out.update({dst: metrics[src] for src, dst in _SUMMARY_KEYS.items() if metrics.get(src) is not None})
    return out


class NullLogger:
    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def finalize(self, metrics: Mapping[str, Any], run_dir: str | Path) -> None:
        """Called once with the finished run's metrics.json (scripts/train.py): the one writer of the summary."""

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbLogger(NullLogger):
    """Thin wrapper over ``wandb.init``: group by experiment, tags mixer/dataset/task, full resolved config.

    The run id is kept in ``<run dir>/wandb_run_id``, so a run resumed from its checkpoint continues the same W&B run
    (offline: ``wandb sync`` uploads every part into that run). ``define_metric`` puts epoch-level curves (val/*,
    perf/*, train/epoch_loss) on ``train/epoch``; per-step ``train/loss`` stays on the global step. At the end
    :meth:`finalize` writes the summary from metrics.json (the best epoch's validation metrics, not the last
    epoch's) and, with ``logger.artifacts=true``, logs metrics.json and the best checkpoint as artifacts.
    """

    def __init__(self, cfg: DictConfig, run_dir: str):
        import wandb

        lc = cfg.logger
        self.artifacts = bool(lc.get("artifacts", False))
        id_file = Path(run_dir) / RUN_ID_FILE
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        if run_id is None:
            run_id = uuid.uuid4().hex[:8]
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            id_file.write_text(run_id + "\n")
        self.run = wandb.init(project=lc.project, entity=lc.get("entity"), group=lc.get("group"),
                              name=lc.get("name"), tags=list(lc.get("tags") or []), mode=lc.mode, dir=run_dir,
                              config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous",
                              id=run_id, resume="allow", job_type=lc.get("job_type") or "train")
        self.run.define_metric("train/epoch")
        for pattern in ("train/epoch_loss", "val/*", "perf/*"):
            self.run.define_metric(pattern, step_metric="train/epoch")

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.run.log(dict(metrics), step=step)

    def finalize(self, metrics: Mapping[str, Any], run_dir: str | Path) -> None:
        for k, v in summary_from_metrics(metrics).items():
            self.run.summary[k] = v
        if not self.artifacts:
            return
        import wandb

        name = str(metrics.get("experiment") or "run").replace("/", "-") + f"-seed{metrics.get('seed')}"
        art = wandb.Artifact(f"metrics-{name}", type="metrics")
        art.add_file(str(Path(run_dir) / "metrics.json"))
        self.run.log_artifact(art)
        best = Path(run_dir) / "checkpoints" / "best.pt"
        if best.is_file():
            model = wandb.Artifact(f"model-{name}", type="model", metadata={"best_epoch": metrics.get("best_epoch")})
            model.add_file(str(best))
            self.run.log_artifact(model)

    def finish(self, exit_code: int = 0) -> None:
        self.run.finish(exit_code=exit_code)


def build_logger(cfg: DictConfig, run_dir: str):
    kind = cfg.logger.get("kind", "none") if cfg.get("logger") else "none"
    if kind == "wandb" and cfg.logger.get("mode", "offline") != "disabled":
        return WandbLogger(cfg, run_dir)
    if kind not in ("wandb", "none"):
        raise ValueError(f"logger.kind={kind!r} is not one of ['wandb', 'none']")
    log.warning("W&B logging is off (logger=%s); metrics go to metrics.json only", kind)
    return NullLogger()
