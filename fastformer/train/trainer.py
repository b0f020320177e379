"""The generic training loop: device + precision, Adam, loaders, epochs, checkpoint/resume, best epoch, outputs,
metrics.json. The contract with tasks is written in fastformer/tasks/base.py."""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, RandomSampler

from fastformer.data.schema import drop_defaults
from fastformer.errors import UserInputError
from fastformer.mixers import implementation_report
from fastformer.ops import cpu_dropout, set_cpu_dropout
from fastformer.tasks.base import Task, build_loader, to_device
from fastformer.train.distributed import (
    GlobalBatchSampler,
    ShardSampler,
    all_gather,
    all_reduce_sum,
    barrier,
    setup_distributed,
)
from fastformer.train.sampling import LengthGroupedBatchSampler, global_batches, length_order, padded_fraction
from fastformer.utils import (
    atomic_torch_save,
    atomic_write_json,
    count_params,
    device_name,
    git_sha,
    progress,
    resolve_device,
)

log = logging.getLogger(__name__)


def config_hash(cfg: DictConfig) -> str:
    """Hash of the resolved config minus bookkeeping keys: a run dir only resumes a run of the same config."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("paths", "logger", "hydra", "variant"):  # bookkeeping: where things go, how the row is named
        c.pop(k, None)
    for k in ("progress_bar", "resume", "stop_after_epochs", "device", "num_workers"):
        c.get("trainer", {}).pop(k, None)
    c.get("data", {}).pop("cache_dir", None)  # where caches live does not change the run
    if isinstance(c.get("data"), dict):  # download URLs; options added later, at their defaults (same hash as before)
        c["data"] = drop_defaults(c["data"])
    return hashlib.sha1(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_row(cfg: DictConfig) -> dict[str, Any]:
    """The table row a run belongs to, as metrics.json and failed.json record it (fastformer/results read these)."""
    return {"task": cfg.task.name, "dataset": cfg.data.get("name"), "mixer": cfg.model.mixer.name,
            "variant": cfg.get("variant") or cfg.model.mixer.name, "experiment": cfg.get("experiment_name"),
            "seed": int(cfg.seed), "preset": cfg.get("preset_name")}


#: divergence criterion: a run stops when the mean training loss of the epoch so far (checked every 10 steps and at
#: the epoch's end) exceeds DIVERGE_FACTOR x max(first step's loss, 1). The first step's loss is the untrained model's
#: (about log(n_classes) for classification), so a healthy run stays far below it; optimizer.lr=10 reaches thousands.
DIVERGE_FACTOR = 10.0


class CheckpointError(RuntimeError, UserInputError):
    """checkpoints/last.pt cannot be resumed from (unreadable, or written by another config)."""


class TrainingDivergedError(FloatingPointError, UserInputError):
    """The training loss became NaN/inf or diverged (see :data:`DIVERGE_FACTOR`)."""


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


class Trainer:
    """Runs ``task`` under ``cfg.trainer`` and writes ``metrics.json`` + checkpoints into ``run_dir``.

    Resumes from ``run_dir/checkpoints/last.pt`` when present (re-running a job in the same dir continues it; a finished
    run is not retrained). The shuffle order of epoch ``e`` is drawn from ``seed + e``, and RNG states are checkpointed,
    so an interrupted + resumed CPU run gives the same final metrics as an uninterrupted one.
    """

    def __init__(self, cfg: DictConfig, task: Task, run_dir: str | os.PathLike, logger):
        self.cfg, self.task, self.logger = cfg, task, logger
        self.tc = cfg.trainer
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.rank, self.world = setup_distributed(self.tc.device)
        self.ddp = self.world > 1
        self.device = resolve_device(self.tc.device)
        if self.ddp and self.device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
            torch.cuda.set_device(self.device)
        prec = self.tc.precision if self.tc.precision != "auto" else ("bf16" if self.device.type == "cuda" else "fp32")
        if prec not in ("fp32", "bf16", "fp16"):
            raise UserInputError(f"trainer.precision={prec!r} is not one of ['auto', 'fp32', 'bf16', 'fp16']")
        self.precision = prec
        set_cpu_dropout(str(self.tc.get("cpu_dropout", "torch")))  # fastformer/ops.py
        if self.tc.get("threads"):  # parallel sweep jobs x threads <= cores (the cpu preset: 2 jobs x 1 thread)
            torch.set_num_threads(int(self.tc.threads))
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
        if cfg.get("predict") and not task.can_predict():
            raise UserInputError(f"predict=true: task {cfg.task.name!r} has no prediction-file writer; set "
                                 f"predict=false")
        self._eval_loaders: dict[str, DataLoader] = {}
        self.shard_eval = self.ddp and task.shards_evaluation()
        self.eval_shards = self.world if self.shard_eval else 1  # recorded in metrics.json
        self.pad_fraction: float | None = None  # padding share of the current epoch's batches (_train_loader)

    # ------------------------------------------------------------------------------------------------ helpers
    def _autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

    def _lengths(self, dataset) -> Any:
        """The items' lengths when the task batches by length (``task.group_by_length``) and the dataset has them."""
        if not self.cfg.task.get("group_by_length", False):
            return None
        return getattr(dataset, "lengths", None)

    def _train_loader(self, epoch: int) -> DataLoader:
        """Epoch ``epoch``'s training loader: the order is drawn from ``seed * 1000 + epoch`` (resumable); under DDP
        each rank takes its slice of every global batch of that same order (fastformer/train/distributed.py).
        ``task.group_by_length``: length-grouped global batches (fastformer/train/sampling.py). Sets
        ``self.pad_fraction``, the share of padding in the epoch's padded batches (None without lengths)."""
        dataset = self.task.train_dataset(epoch)  # the same set every epoch, or fresh data (probes)
        seed = int(self.cfg.seed) * 1000 + epoch
        gb = int(self.cfg.task.batch_size)
        lengths, self.pad_fraction = self._lengths(dataset), None
        if lengths is not None:
            bs = LengthGroupedBatchSampler(lengths, global_batch=gb, seed=seed, rank=self.rank, world=self.world,
                                           pool=int(self.cfg.task.get("length_pool", 50)))
            self.pad_fraction = bs.padded_fraction
            return build_loader(self.task, "train", dataset=dataset, batch_sampler=bs,
                                pin_memory=self.device.type == "cuda")
        if getattr(dataset, "lengths", None) is not None:  # random batches: their padding, for comparison
            self.pad_fraction = padded_fraction(global_batches(len(dataset), gb, seed=seed), dataset.lengths)
        if self.ddp:
            sampler = GlobalBatchSampler(len(dataset), global_batch=int(self.cfg.task.batch_size), rank=self.rank,
                                         world=self.world, generator_seed=seed)
        else:
            sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
        return build_loader(self.task, "train", dataset=dataset, sampler=sampler, pin_memory=self.device.type == "cuda",
                            batch_size=int(self.cfg.task.batch_size) // self.world)

    def _eval_loader(self, split: str) -> DataLoader:
        """The loader of an evaluation split; under DDP (for a task that shards) this rank's shard of it."""
        if split not in self._eval_loaders:
            ds = self.task.dataset(split)
            lengths = self._lengths(ds)
            order = length_order(lengths) if lengths is not None else None  # longest first: little padding
            sampler = order
            if self.shard_eval:
                sampler = ShardSampler(len(ds), rank=self.rank, world=self.world, order=order)
            self._eval_loaders[split] = build_loader(self.task, split, sampler=sampler,
                                                     pin_memory=self.device.type == "cuda")
        return self._eval_loaders[split]

    def _evaluate(self, model, split: str) -> dict[str, float]:
        """Metrics of ``split``; under DDP every rank evaluates its shard, the records of all ranks are gathered and
        every rank computes the same metrics from them (equal to a 1-process evaluation). A task that only
        overrides ``evaluate`` is evaluated whole on rank 0 (the other ranks get {})."""
        model.eval()
        with torch.no_grad(), self._autocast():
            if self.shard_eval:
                records = [r for part in all_gather(self.task.eval_outputs(model, split)) for r in part]
                out = self.task.eval_metrics(records, split)
            elif self.rank == 0:
                out = self.task.evaluate(model, split)
            else:
                out = {}
        model.train()
        return {k: float(v) for k, v in out.items()}

    def _check_divergence(self, mean_loss: float, first_loss: float, epoch: int, step: int) -> None:
        """Stop with one line when the epoch's mean training loss so far passes the :data:`DIVERGE_FACTOR` bound."""
        bound = DIVERGE_FACTOR * max(first_loss, 1.0)
        if mean_loss > bound:
            raise TrainingDivergedError(
                f"training diverged: mean loss {mean_loss:.4g} over epoch {epoch + 1}'s first {step + 1} steps is "
                f"> {DIVERGE_FACTOR:g} x max(first step's loss {first_loss:.4g}, 1) = {bound:.4g} (optimizer.lr="
                f"{self.cfg.optimizer.get('lr')}); lower optimizer.lr or set trainer.grad_clip (run dir "
                f"{self.run_dir})")

    def _save(self, name: str, state: dict) -> None:
        if self.rank == 0:
            atomic_torch_save(state, self.ckpt_dir / name)

    # ------------------------------------------------------------------------------------------------ main
    def fit(self) -> dict[str, Any]:
        t_start = time.perf_counter()
        self.task.setup()
        self.task.bind_loaders(self._eval_loader)
        model = self.task.build_model().to(self.device)
        n_params = count_params(model)
        opt = hydra.utils.instantiate(self.cfg.optimizer)(params=[p for p in model.parameters() if p.requires_grad])
        scaler = torch.amp.GradScaler(enabled=self.precision == "fp16")
        train_model = torch.nn.parallel.DistributedDataParallel(model) if self.ddp else model
        state = {"epoch": 0, "history": [], "best": None, "best_epoch": None, "train_time": 0.0, "train_tokens": 0}
        last = self.ckpt_dir / "last.pt"
        if last.exists() and self.tc.get("resume", True):
            try:
                ck = torch.load(last, map_location=self.device, weights_only=False)
                if not isinstance(ck, dict) or not {"model", "optimizer", "state"} <= set(ck):
                    raise ValueError(f"a {type(ck).__name__} without model/optimizer/state")
            except Exception as err:  # truncated (kill during a copy, full disk), not a checkpoint at all, ...
                why = f"{type(err).__name__}: {err}".splitlines()[0][:160]
                raise CheckpointError(f"{last}: cannot resume from this checkpoint, it is truncated or corrupt "
                                      f"({why}); delete it or trainer.resume=false to start the run over") from None
            if ck.get("config_hash") != config_hash(self.cfg):
                raise CheckpointError(f"{last} belongs to a run with a different config; delete {self.run_dir} or "
                                      "choose another hydra.run.dir (or set trainer.resume=false to start over)")
            model.load_state_dict(ck["model"])
            opt.load_state_dict(ck["optimizer"])
            if ck.get("scaler") is not None:
                scaler.load_state_dict(ck["scaler"])
            torch.set_rng_state(ck["rng_cpu"])
            if ck.get("rng_rank") is not None and self.rank < len(ck["rng_rank"]):  # this rank's own stream
                torch.set_rng_state(ck["rng_rank"][self.rank])
            if torch.cuda.is_available() and ck.get("rng_cuda") is not None:
                torch.cuda.set_rng_state_all(ck["rng_cuda"])
            state = ck["state"]
            log.info("resumed from %s at epoch %d", last, state["epoch"])
        max_epochs, limit = int(self.tc.max_epochs), self.tc.get("limit_train_batches")
        start_epoch = state["epoch"]
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        model.train()
        stop_after = self.tc.get("stop_after_epochs")  # end this invocation early (time-limited jobs); resume later
        stop_at = self.tc.get("stop_at")  # stop once the monitored validation metric reaches this (Zoology: 99% acc)
        for epoch in range(state["epoch"], max_epochs):
            if state.get("reached_stop_at"):  # a resumed run that had already reached it
                break
            if stop_after is not None and epoch - start_epoch >= int(stop_after):
                log.info("stopping after %d epoch(s) as trainer.stop_after_epochs says; re-run to resume", stop_after)
                return {"stopped_at_epoch": epoch}
            loader = self._train_loader(epoch)
            n_batches = len(loader) if limit is None else min(len(loader), int(limit))
            bar = progress(total=n_batches, desc=f"epoch {epoch + 1}/{max_epochs}", disable=self.rank != 0 or
                           not self.tc.get("progress_bar", True), leave=False)
            t0, tokens, loss_sum = time.perf_counter(), 0, 0.0
            for step, batch in enumerate(loader):
                if step >= n_batches:
                    break
                batch = to_device(batch, self.device)
                with self._autocast():
                    loss, n_tok = self.task.training_step(train_model, batch)
                if not torch.isfinite(loss):
                    raise TrainingDivergedError(
                        f"training loss is {loss.item()} at epoch {epoch + 1} step {step} (optimizer.lr="
                        f"{self.cfg.optimizer.get('lr')}); lower optimizer.lr, set trainer.grad_clip or "
                        f"trainer.precision=fp32 (run dir {self.run_dir})")
                if state.get("first_loss") is None:
                    state["first_loss"] = loss.item()
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if self.tc.get("grad_clip"):
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), float(self.tc.grad_clip))
                scaler.step(opt)
                scaler.update()
                tokens += int(n_tok)
                loss_sum += loss.item()
                if not self.ddp and ((step + 1) % 10 == 0 or step + 1 == n_batches):
                    self._check_divergence(loss_sum / (step + 1), state["first_loss"], epoch, step)
                gstep = epoch * n_batches + step
                if step % int(self.tc.get("log_every", 50)) == 0:
                    self.logger.log({"train/loss": loss.item(), "train/epoch": epoch + step / n_batches}, gstep)
                bar.set_postfix(loss=f"{loss.item():.4f}")
                bar.update()
            bar.close()
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            dt = time.perf_counter() - t0
            # every rank's tokens count (throughput of the whole job); the loss is the mean over ranks' steps
            tokens_all, loss_sum = all_reduce_sum([tokens, loss_sum / self.world], self.device)
            if self.ddp and state.get("first_loss") is not None:  # all ranks decide on the same numbers (one rank
                # raising alone would hang the others)
                first_all, = all_reduce_sum([state["first_loss"] / self.world], self.device)
                self._check_divergence(loss_sum / max(n_batches, 1), float(first_all), epoch, n_batches - 1)
            tokens = int(tokens_all)
            state["train_time"] += dt
            state["train_tokens"] += tokens
            val = self._evaluate(model, "val")
            score = val.get(self.task.monitor, -math.inf) if val else -math.inf
            improved = self.rank == 0 and (state["best"] is None or score > state["best"])
            if improved:
                state["best"], state["best_epoch"] = score, epoch + 1
                self._save("best.pt", {"model": model.state_dict(), "epoch": epoch + 1})
            row = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_batches, 1), "tokens_per_s": tokens / dt,
                   **({"pad_fraction": self.pad_fraction} if self.pad_fraction is not None else {}),
                   **{f"val_{k}": v for k, v in val.items()}}
            state["history"].append(row)
            self.logger.log({"train/epoch": epoch + 1, "train/epoch_loss": row["train_loss"],
                             "perf/tokens_per_s": row["tokens_per_s"],
                             **{f"val/{k}": v for k, v in val.items()}}, (epoch + 1) * n_batches)
            log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items()})
            state["epoch"] = epoch + 1
            reached = bool(val) and score >= float(stop_at) if stop_at is not None else False
            if stop_at is not None and self.ddp:  # every rank stops together (rank 0 may be the only one with val)
                reached = all_reduce_sum([float(reached)], self.device)[0] > 0
            if reached:
                state["reached_stop_at"] = epoch + 1
                log.info("epoch %d: validation %s %.4g >= trainer.stop_at=%s: stopping", epoch + 1,
                         self.task.monitor, score, stop_at)
            # every rank's CPU RNG (dropout, negative sampling) so a resumed DDP run continues each
            rng_rank = all_gather(torch.get_rng_state()) if self.ddp else None
            self._save("last.pt", {"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state,
                                   "scaler": scaler.state_dict(), "rng_rank": rng_rank,
                                   "rng_cpu": torch.get_rng_state(), "config_hash": config_hash(self.cfg),
                                   "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None})
            if state.get("reached_stop_at"):
                break
        barrier()  # rank 0 has written best.pt
        best = torch.load(self.ckpt_dir / "best.pt", map_location=self.device, weights_only=False)
        model.load_state_dict(best["model"])  # the best epoch's weights: its val, the test, the outputs
        val = self._evaluate(model, "val")
        test = self._evaluate(model, "test")
        if self.rank != 0:
            return {}
        self._eval_loaders.clear()
        self.shard_eval = False  # prediction files (rank 0) cover the whole split
        self.logger.log({**{f"test/{k}": v for k, v in test.items()}}, None)
        metrics = self._metrics(val, test, state, n_params, time.perf_counter() - t_start)
        metrics.update(self.task.run_record())
        metrics["mixer_impl"] = implementation_report(model)  # which mixer implementation ran (fused / eager, why)
        self.task.write_outputs(str(self.run_dir))
        if self.cfg.get("predict"):  # e.g. the MIND leaderboard prediction.txt, from the best epoch
            with self._autocast():
                metrics["predict"] = self.task.predict(model, str(self.run_dir))
        self.logger.summary({f"test/{k}": v for k, v in test.items()})
        atomic_write_json(self.run_dir / "metrics.json", metrics)
        return metrics

    def _metrics(self, val, test, state, n_params, wall) -> dict[str, Any]:
        cfg = self.cfg
        peak = (torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return {
            **run_row(cfg), "task": self.task.name, "world_size": self.world, "eval_shards": self.eval_shards,
            "val": val, "test": test, "best_epoch": state["best_epoch"], "monitor": self.task.monitor,
            "history": state["history"], "params": n_params,
            "epochs_run": state["epoch"], "reached_stop_at": state.get("reached_stop_at"),
            "train_tokens_per_s": state["train_tokens"] / max(state["train_time"], 1e-9),
            "train_tokens": state["train_tokens"],  # summed over DDP ranks, like the throughput
            "group_by_length": bool(cfg.task.get("group_by_length", False)), "cpu_dropout": cpu_dropout(),
            "threads": torch.get_num_threads(),
            "train_pad_fraction": _mean([h["pad_fraction"] for h in state["history"] if "pad_fraction" in h]),
            "peak_mem_mb": peak, "peak_mem_kind": "cuda_max_allocated" if self.device.type == "cuda" else "cpu_max_rss",
            "device": device_name(self.device), "precision": self.precision, "torch": torch.__version__,
            "git_sha": git_sha(), "wall_s": wall, "train_s": state["train_time"], "data_info": self.task.data_info(),
            "config_hash": config_hash(cfg), "baselines": self.task.reference_metrics(),
        }
