"""Train and evaluate one configuration.   python scripts/train.py experiment=imdb/fastformer [key=value ...]

Multiruns: python scripts/train.py -m experiment=imdb/fastformer,imdb/transformer seed=1,2,3
Writes <run dir>/metrics.json (see fastformer/train/trainer.py) and returns it.
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
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from fastformer.train.logging import build_logger  # noqa: E402
from fastformer.train.trainer import Trainer  # noqa: E402
from fastformer.utils import atomic_write_json, git_sha, seed_everything  # noqa: E402

log = logging.getLogger("train")


def train(cfg: DictConfig, run_dir: str) -> dict:
    """Instantiate task -> Trainer -> fit; always closes the logger (also when the run fails inside a multirun)."""
    metrics_path = Path(run_dir) / "metrics.json"
    if cfg.get("skip_finished") and metrics_path.exists():
        log.info("skipping %s: metrics.json exists (skip_finished=true)", run_dir)
        return json.loads(metrics_path.read_text())
    seed_everything(int(cfg.seed))
    logger = build_logger(cfg, run_dir)
    try:
        task = hydra.utils.get_class(cfg.task._target_)(cfg)
        metrics = Trainer(cfg, task, run_dir, logger).fit()
        if cfg.get("predict") and metrics.get("test") is not None:  # e.g. the MIND leaderboard prediction.txt
            if not hasattr(task, "predict"):
                raise ValueError(f"predict=true: task {cfg.task.name!r} has no prediction-file writer")
            import torch

            model = task.build_model()
            model.load_state_dict(torch.load(Path(run_dir) / "checkpoints" / "best.pt", map_location="cpu",
                                             weights_only=False)["model"])
            metrics["predict"] = task.predict(model, run_dir)
            atomic_write_json(metrics_path, metrics)
        if metrics.get("test") is not None:
            logger.finalize(metrics, run_dir)  # W&B summary = the best epoch's metrics (+ optional artifacts)
    except BaseException as e:
        logger.finish(exit_code=1)
        if not isinstance(e, KeyboardInterrupt):  # record the failure so sweeps and tables report it
            atomic_write_json(Path(run_dir) / "failed.json", {
                "task": cfg.task.name, "dataset": cfg.data.get("name"), "mixer": cfg.model.mixer.name,
                "experiment": cfg.get("experiment_name"), "seed": int(cfg.seed), "preset": cfg.get("preset_name"),
                "error": f"{type(e).__name__}: {e}".splitlines()[0][:500], "git_sha": git_sha()})
        raise
    logger.finish()
    (Path(run_dir) / "failed.json").unlink(missing_ok=True)
    return metrics


@hydra.main(version_base="1.3", config_path="../configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    OmegaConf.set_struct(cfg, True)
    run_dir = HydraConfig.get().runtime.output_dir
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:  # torchrun (DDP): every rank uses rank 0's run dir
        import torch
        import torch.distributed as dist

        dist.init_process_group("nccl" if torch.cuda.is_available() and cfg.trainer.device != "cpu" else "gloo")
        box = [run_dir]
        dist.broadcast_object_list(box, src=0)
        run_dir = box[0]
    metrics = train(cfg, run_dir)
    test = metrics.get("test", {})
    log.info("test metrics: %s", {k: round(v, 4) for k, v in test.items()})
    return test.get(cfg.task.monitor)


if __name__ == "__main__":
    main()
