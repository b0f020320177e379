"""Experiment loggers: W&B (offline by default) or none. The results tables never depend on them (metrics.json)."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class NullLogger:
    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        pass

    def summary(self, metrics: Mapping[str, Any]) -> None:
        pass

    def finish(self, exit_code: int = 0) -> None:
        pass


class WandbLogger(NullLogger):
    """Thin wrapper over ``wandb.init``: group by experiment, tags mixer/dataset/task, full resolved config."""

    def __init__(self, cfg: DictConfig, run_dir: str):
        import wandb

        lc = cfg.logger
        self.run = wandb.init(project=lc.project, entity=lc.get("entity"), group=lc.get("group"),
                              name=lc.get("name"), tags=list(lc.get("tags") or []), mode=lc.mode, dir=run_dir,
                              config=OmegaConf.to_container(cfg, resolve=True), reinit="finish_previous")

    def log(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self.run.log(dict(metrics), step=step)

    def summary(self, metrics: Mapping[str, Any]) -> None:
        for k, v in metrics.items():
            self.run.summary[k] = v

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
