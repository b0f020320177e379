"""Experiment loggers: W&B (offline by default) or none. The results tables never depend on them (metrics.json)."""
from __future__ import annotations

import json
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

    def summary(self, metrics: Mapping[str, Any]) -> None:
        pass

    def finalize(self, metrics: Mapping[str, Any], run_dir: str | Path) -> None:
        """Called once with the finished run's metrics.json (scripts/train.py)."""

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

    def summary(self, metrics: Mapping[str, Any]) -> None:
        for k, v in metrics.items():
            self.run.summary[k] = v

    def finalize(self, metrics: Mapping[str, Any], run_dir: str | Path) -> None:
        self.summary(summary_from_metrics(metrics))
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


def _put(d: dict, item, value) -> None:
    keys = [item.key] if item.key else list(item.nested_key)
    for k in keys[:-1]:
        d = d.setdefault(k, {})
    d[keys[-1]] = value


def _record_chunks(path: Path) -> list[bytes]:
    """The record payloads of a W&B ``.wandb`` file (LevelDB log format: 32 KiB blocks, 7-byte chunk headers)."""
    import struct

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path}: not a W&B record file")
    chunks, pos, buf, block = [], 7, b"", 32768
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # a chunk the writer has not finished
            break
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        if kind == 1:
            chunks.append(payload)
        elif kind == 2:
            buf = payload
        elif kind == 3:
            buf += payload
        elif kind == 4:
            chunks.append(buf + payload)
        elif kind == 0 and length == 0:
            pos += block - pos % block if pos % block else 0
    return chunks


def read_offline_run(run_dir: str | Path, wait_s: float = 60.0) -> dict[str, Any]:
    """Summary, history rows, config, metric definitions and artifacts of an offline W&B run (``.../offline-run-*``).

    Parses the run's ``run-<id>.wandb`` record stream (LevelDB log blocks of protobuf ``Record``s), so tests and
    users can check what a later ``wandb sync`` would upload without a network. ``run.finish()`` can return before
    the W&B service process has flushed the stream (seen on a loaded 2-core CI machine: a file holding only its
    header), so this waits up to ``wait_s`` seconds for the stream's closing ``exit`` record.
    """
    import time

    from wandb.proto import wandb_internal_pb2 as pb

    path = next(Path(run_dir).glob("run-*.wandb"))
    deadline = time.monotonic() + wait_s
    while True:
        records = [pb.Record.FromString(c) for c in _record_chunks(path)]
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: no exit record after {wait_s:.0f} s; the run is still open or was killed "
                               "before W&B flushed it")
        time.sleep(0.2)
    out: dict[str, Any] = {"summary": {}, "history": [], "config": {}, "metrics": {}, "run": {}, "artifacts": []}
    for rec in records:
        field = rec.WhichOneof("record_type")
        if field == "summary":
            for item in rec.summary.update:
                _put(out["summary"], item, json.loads(item.value_json))
        elif field == "history":
            row: dict[str, Any] = {}
            for item in rec.history.item:
                _put(row, item, json.loads(item.value_json))
            out["history"].append(row)
        elif field == "config":
            for item in rec.config.update:
                _put(out["config"], item, json.loads(item.value_json))
        elif field == "metric":
            out["metrics"][rec.metric.name or rec.metric.glob_name] = rec.metric.step_metric
        elif field == "artifact":
            a = rec.artifact
            files = [e.path for e in a.manifest.contents]
            if not files and a.manifest.manifest_file_path:  # large manifests go to a side file
                with open(a.manifest.manifest_file_path) as f:
                    files = [json.loads(line)["path"] for line in f if line.strip()]
            out["artifacts"].append({"name": a.name, "type": a.type, "files": files,
                                     "metadata": json.loads(a.metadata) if a.metadata else {}})
        elif field == "run":  # the first record, then updates: keep what each sets
            vals = {"id": rec.run.run_id, "group": rec.run.run_group, "name": rec.run.display_name,
                    "tags": list(rec.run.tags), "job_type": rec.run.job_type}
            out["run"].update({k: v for k, v in vals.items() if v})
    return out


def build_logger(cfg: DictConfig, run_dir: str):
    kind = cfg.logger.get("kind", "none") if cfg.get("logger") else "none"
    if kind == "wandb" and cfg.logger.get("mode", "offline") != "disabled":
        return WandbLogger(cfg, run_dir)
    if kind not in ("wandb", "none"):
        raise ValueError(f"logger.kind={kind!r} is not one of ['wandb', 'none']")
    log.warning("W&B logging is off (logger=%s); metrics go to metrics.json only", kind)
    return NullLogger()
