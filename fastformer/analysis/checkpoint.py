"""Load a finished run's model: its saved config (``<run_dir>/.hydra/config.yaml``), its task, and the weights of
``checkpoints/best.pt``, ready for evaluation. One loader for every analysis of trained runs."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch


def load_trained(run_dir: str | os.PathLike) -> tuple[Any, Any, torch.nn.Module]:
    """-> (cfg, task, model in eval mode) of ``run_dir``. Data paths in the saved config resolve in the calling
    environment (``DATA_ROOT``; ``PROJECT_ROOT``, else this checkout, as scripts/*.py would set it)."""
    from omegaconf import OmegaConf

    from fastformer.tasks import build_task

    run_dir = Path(run_dir)
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    if "PROJECT_ROOT" not in os.environ and OmegaConf.select(cfg, "paths.root_dir") is not None:
        cfg.paths.root_dir = str(Path(__file__).resolve().parents[2])
    task = build_task(cfg)
    task.setup()
    model = task.build_model()
    model.load_state_dict(torch.load(run_dir / "checkpoints" / "best.pt", map_location="cpu",
                                     weights_only=False)["model"])
    return cfg, task, model.eval()
