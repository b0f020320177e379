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
from fastformer.tasks.base import Task, build_loader, device_batches, to_device
from fastformer.train.distributed import (
    DistContext,
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
    keep_cpu_memory,
    progress,
)

log = logging.getLogger(__name__)


#: model options added after runs were committed, with the value every earlier run had: left out of the hash at that
#: value (as the data options of fastformer/data/schema.py NEUTRAL_DEFAULTS are), so those runs still resume
MODEL_NEUTRAL_DEFAULTS = {("encoder", "ffn_dropout"): True}


def config_hash(cfg: DictConfig) -> str:
    """Hash of the resolved config minus bookkeeping keys: a run dir only resumes a run of the same config."""
    c = OmegaConf.to_container(cfg, resolve=True)
    for k in ("paths", "logger", "hydra", "row"):  # bookkeeping: where things go, how the row is named
        c.pop(k, None)
    for k in ("progress_bar", "resume", "stop_after_epochs", "device", "num_workers"):
        c.get("trainer", {}).pop(k, None)
    c.get("data", {}).pop("cache_dir", None)  # where caches live does not change the run
    if isinstance(c.get("data"), dict):  # download URLs; options added later, at their defaults (same hash as before)
        c["data"] = drop_defaults(c["data"])
    for (node, key), default in MODEL_NEUTRAL_DEFAULTS.items():
        sub = (c.get("model") or {}).get(node)
        if isinstance(sub, dict) and key in sub and sub[key] == default:
            sub.pop(key)
    return hashlib.sha1(json.dumps(c, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_row(cfg: DictConfig) -> dict[str, Any]:
    """The table row a run belongs to, as metrics.json and failed.json record it (fastformer/results read these)."""
    return {"task": cfg.task.name, "dataset": cfg.data.get("name"), "mixer": cfg.model.mixer.name,
            "row": cfg.get("row") or cfg.model.mixer.name, "experiment": cfg.get("experiment_name"),
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
    so an interrupted + resumed CPU run gives the same final metrics as an uninterrupted one. ``dist`` is the run's
    process group and device (scripts/train.py sets it up once); without it the Trainer sets it up itself.
    """

    def __init__(self, cfg: DictConfig, task: Task, run_dir: str | os.PathLike, logger,
                 dist: DistContext | None = None):
        self.cfg, self.task, self.logger = cfg, task, logger
        self.tc = cfg.trainer
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        dist = dist if dist is not None else setup_distributed(self.tc.device)
        self.rank, self.world, self.device = dist.rank, dist.world, dist.device
        self.ddp = dist.ddp
        prec = self.tc.precision if self.tc.precision != "auto" else ("bf16" if self.device.type == "cuda" else "fp32")
        if prec not in ("fp32", "bf16", "fp16"):
            raise UserInputError(f"trainer.precision={prec!r} is not one of ['auto', 'fp32', 'bf16', 'fp16']")
        self.precision = prec
        set_cpu_dropout(str(self.tc.get("cpu_dropout", "torch")))  # fastformer/ops.py
        self.cpu_heap = keep_cpu_memory()  # fastformer/utils.py: large CPU tensors without a page fault per 4 KiB
        if self.tc.get("threads"):  # parallel sweep jobs x threads <= cores (the cpu preset: 2 jobs x 1 thread)
            torch.set_num_threads(int(self.tc.threads))
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(prec)
        if cfg.get("predict") and not task.can_predict():
            raise UserInputError(f"predict=true: task {cfg.task.name!r} has no prediction-file writer; set "
                                 f"predict=false")
        self._eval_loaders: dict[tuple[str, bool], DataLoader] = {}
        self.eval_shards = self.world  # under DDP every evaluation is sharded (recorded in metrics.json)
        self.pad_fraction: float | None = None  # padding share of the current epoch's batches (_train_loader)

    # ------------------------------------------------------------------------------------------------ the run
    def fit(self) -> dict[str, Any]:
        """Build, resume, then per epoch train + validate + checkpoint; finally test the best epoch and write
        metrics.json. Returns the metrics (rank 0; {} on the other ranks), or ``{"stopped_at_epoch": e}`` when
        ``trainer.stop_after_epochs`` ends this invocation early."""
        t_start = time.perf_counter()
        self._build()
        state = self._resume()
        if self.device.type == "cuda":  # the peak memory of training, not of loading a checkpoint
            torch.cuda.reset_peak_memory_stats(self.device)
        start_epoch = state["epoch"]
        stop_after = self.tc.get("stop_after_epochs")  # end this invocation early (time-limited jobs); resume later
        for epoch in range(start_epoch, int(self.tc.max_epochs)):
            if state.get("reached_stop_at"):  # a resumed run that had already reached trainer.stop_at
                break
            if stop_after is not None and epoch - start_epoch >= int(stop_after):
                log.info("stopping after %d epoch(s) as trainer.stop_after_epochs says; re-run to resume", stop_after)
                return {"stopped_at_epoch": epoch}
            row, n_batches = self._train_epoch(epoch, state)
            self._validate_and_checkpoint(epoch, state, row, n_batches)
            if state.get("reached_stop_at"):
                break
        test = self._final_test()
        if self.rank != 0:
            return {}
        return self._write_metrics(state, test, time.perf_counter() - t_start)

    def _build(self) -> None:
        """The task's data, the model on the device, the optimizer, the loss scaler (fp16), the DDP wrapper."""
        self.task.setup()
        self.model = self.task.build_model().to(self.device)
        self.n_params = count_params(self.model)
        self.opt = hydra.utils.instantiate(self.cfg.optimizer)(
            params=[p for p in self.model.parameters() if p.requires_grad])
        self.scaler = torch.amp.GradScaler(enabled=self.precision == "fp16")
        self.train_model = torch.nn.parallel.DistributedDataParallel(self.model) if self.ddp else self.model
        self.model.train()

    def _resume(self) -> dict[str, Any]:
        """The run state: from ``checkpoints/last.pt`` (model, optimizer, scaler, RNG states restored) when it exists
        and ``trainer.resume`` allows, else a fresh one. A checkpoint that cannot be read, or that another config
        wrote, stops the run with a :class:`CheckpointError`."""
        state = {"epoch": 0, "history": [], "best": None, "best_epoch": None, "train_time": 0.0, "train_tokens": 0}
        last = self.ckpt_dir / "last.pt"
        if not (last.exists() and self.tc.get("resume", True)):
            return state
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
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        if ck.get("scaler") is not None:
            self.scaler.load_state_dict(ck["scaler"])
        torch.set_rng_state(ck["rng_cpu"])
        if ck.get("rng_rank") is not None and self.rank < len(ck["rng_rank"]):  # this rank's own stream
            torch.set_rng_state(ck["rng_rank"][self.rank])
        if torch.cuda.is_available() and ck.get("rng_cuda") is not None:
            torch.cuda.set_rng_state_all(ck["rng_cuda"])
        log.info("resumed from %s at epoch %d", last, ck["state"]["epoch"])
        return ck["state"]

    def _train_epoch(self, epoch: int, state: dict) -> tuple[dict[str, float], int]:
        """One epoch of optimizer steps (at most ``trainer.limit_train_batches``) -> (its history row so far:
        epoch, mean training loss over ranks, tokens/s of the whole job, padding share; the number of batches).
        Stops with a :class:`TrainingDivergedError` on a NaN/inf loss or a diverging mean loss."""
        loader, limit = self._train_loader(epoch), self.tc.get("limit_train_batches")
        n_batches = len(loader) if limit is None else min(len(loader), int(limit))
        bar = progress(total=n_batches, desc=f"epoch {epoch + 1}/{int(self.tc.max_epochs)}", leave=False,
                       disable=self.rank != 0 or not self.tc.get("progress_bar", True))
        t0, tokens, loss_sum = time.perf_counter(), 0, 0.0
        for step, batch in enumerate(loader):
            if step >= n_batches:
                break
            loss, n_tok = self._step(to_device(batch, self.device), epoch, step)
            if state.get("first_loss") is None:
                state["first_loss"] = loss
            tokens += int(n_tok)
            loss_sum += loss
            if not self.ddp and ((step + 1) % 10 == 0 or step + 1 == n_batches):
                self._check_divergence(loss_sum / (step + 1), state["first_loss"], epoch, step)
            if step % int(self.tc.get("log_every", 50)) == 0:
                self.logger.log({"train/loss": loss, "train/epoch": epoch + step / n_batches},
                                epoch * n_batches + step)
            bar.set_postfix(loss=f"{loss:.4f}")
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
        row = {"epoch": epoch + 1, "train_loss": loss_sum / max(n_batches, 1), "tokens_per_s": tokens / dt,
               **({"pad_fraction": self.pad_fraction} if self.pad_fraction is not None else {})}
        return row, n_batches

    def _step(self, batch: Any, epoch: int, step: int) -> tuple[float, int]:
        """One optimizer step on a device batch -> (its loss, its token count)."""
        with self._autocast():
            loss, n_tok = self.task.training_step(self.train_model, batch)
        if not torch.isfinite(loss):
            raise TrainingDivergedError(
                f"training loss is {loss.item()} at epoch {epoch + 1} step {step} (optimizer.lr="
                f"{self.cfg.optimizer.get('lr')}); lower optimizer.lr, set trainer.grad_clip or "
                f"trainer.precision=fp32 (run dir {self.run_dir})")
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.tc.get("grad_clip"):
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), float(self.tc.grad_clip))
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss.item(), n_tok

    def _validate_and_checkpoint(self, epoch: int, state: dict, row: dict[str, float], n_batches: int) -> None:
        """Evaluate ``val``, keep ``best.pt`` when the monitored metric improved, append the epoch to the history,
        decide ``trainer.stop_at`` (every rank together), save ``last.pt``."""
        val = self._evaluate("val")
        score = val.get(self.task.monitor, -math.inf) if val else -math.inf
        if self.rank == 0 and (state["best"] is None or score > state["best"]):
            state["best"], state["best_epoch"] = score, epoch + 1
            self._save("best.pt", {"model": self.model.state_dict(), "epoch": epoch + 1})
        row = {**row, **{f"val_{k}": v for k, v in val.items()}}
        state["history"].append(row)
        self.logger.log({"train/epoch": epoch + 1, "train/epoch_loss": row["train_loss"],
                         "perf/tokens_per_s": row["tokens_per_s"],
                         **{f"val/{k}": v for k, v in val.items()}}, (epoch + 1) * n_batches)
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items()})
        state["epoch"] = epoch + 1
        stop_at = self.tc.get("stop_at")  # stop once the monitored validation metric reaches this (Zoology: 99% acc)
        reached = bool(val) and score >= float(stop_at) if stop_at is not None else False
        if stop_at is not None and self.ddp:  # every rank stops together
            reached = all_reduce_sum([float(reached)], self.device)[0] > 0
        if reached:
            state["reached_stop_at"] = epoch + 1
            log.info("epoch %d: validation %s %.4g >= trainer.stop_at=%s: stopping", epoch + 1,
                     self.task.monitor, score, stop_at)
        # every rank's CPU RNG (dropout, negative sampling) so a resumed DDP run continues each
        rng_rank = all_gather(torch.get_rng_state()) if self.ddp else None
        self._save("last.pt", {"model": self.model.state_dict(), "optimizer": self.opt.state_dict(), "state": state,
                               "scaler": self.scaler.state_dict(), "rng_rank": rng_rank,
                               "rng_cpu": torch.get_rng_state(), "config_hash": config_hash(self.cfg),
                               "rng_cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None})

    def _final_test(self) -> dict[str, float]:
        """Reload the best epoch's weights (its val metrics are in the history) and evaluate ``test`` with them."""
        barrier()  # rank 0 has written best.pt
        best = torch.load(self.ckpt_dir / "best.pt", map_location=self.device, weights_only=False)
        self.model.load_state_dict(best["model"])  # the best epoch's weights: the test, the outputs, the predictions
        test = self._evaluate("test")
        self.logger.log({f"test/{k}": v for k, v in test.items()}, None)
        return test

    def _write_metrics(self, state: dict, test: dict[str, float], wall: float) -> dict[str, Any]:
        """Rank 0: the task's outputs and prediction file, then ``metrics.json`` (the best epoch's val from the
        history, the test of the best epoch, the run record); returns it. The W&B summary is written from it by
        the logger's ``finalize`` (scripts/train.py)."""
        metrics = self._metrics(self._best_val(state), test, state, self.n_params, wall)
        metrics.update(self.task.run_record())
        metrics["mixer_impl"] = implementation_report(self.model)  # which mixer implementation ran (fused / eager)
        self.task.write_outputs(str(self.run_dir))
        if self.cfg.get("predict"):  # e.g. the MIND leaderboard prediction.txt, from the best epoch
            split = self.task.predict_split()
            with self._autocast():  # the whole split (rank 0 alone)
                metrics["predict"] = self.task.predict(self.model, str(self.run_dir),
                                                       self._batches([split], shard=False), self.device)
        atomic_write_json(self.run_dir / "metrics.json", metrics)
        return metrics

    @staticmethod
    def _best_val(state: dict) -> dict[str, float]:
        """The best epoch's validation metrics, as its history row recorded them (``val_<name>``)."""
        row = next(h for h in state["history"] if h["epoch"] == state["best_epoch"])
        return {k[len("val_"):]: v for k, v in row.items() if k.startswith("val_")}

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

    def _eval_loader(self, split: str, shard: bool) -> DataLoader:
        """The loader of an evaluation split (built once); ``shard``: this DDP rank's shard of it."""
        if (split, shard) not in self._eval_loaders:
            ds = self.task.dataset(split)
            lengths = self._lengths(ds)
            order = length_order(lengths) if lengths is not None else None  # longest first: little padding
            sampler = order
            if shard:
                sampler = ShardSampler(len(ds), rank=self.rank, world=self.world, order=order)
            self._eval_loaders[split, shard] = build_loader(self.task, split, sampler=sampler,
                                                            pin_memory=self.device.type == "cuda")
        return self._eval_loaders[split, shard]

    def _batches(self, splits, shard: bool) -> dict[str, device_batches]:
        """What the task's evaluation reads: each split's device batches of the loader built here."""
        return {s: device_batches(self._eval_loader(s, shard), self.device) for s in splits}

    def _evaluate(self, split: str) -> dict[str, float]:
        """Metrics of ``split``; under DDP every rank evaluates its shard, the records of all ranks are gathered and
        every rank computes the same metrics from them (equal to a 1-process evaluation)."""
        model, batches = self.model, self._batches(self.task.eval_splits(split), shard=self.ddp)
        model.eval()
        with torch.no_grad(), self._autocast():
            if self.ddp:
                outputs = self.task.eval_outputs(model, split, batches, self.device)
                out = self.task.eval_metrics([r for part in all_gather(outputs) for r in part], split)
            else:
                out = self.task.evaluate(model, split, batches, self.device)
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

    def _metrics(self, val, test, state, n_params, wall) -> dict[str, Any]:
        cfg = self.cfg
        peak = (torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return {
            **run_row(cfg), "task": self.task.name, "world_size": self.world, "eval_shards": self.eval_shards,
            "val": val, "test": test, "best_epoch": state["best_epoch"], "monitor": self.task.monitor,
            "history": state["history"], "params": n_params,
            "epochs_run": state["epoch"], "max_epochs": int(self.tc.max_epochs),
            "reached_stop_at": state.get("reached_stop_at"), "batch_size": cfg.task.get("batch_size"),
            "train_tokens_per_s": state["train_tokens"] / max(state["train_time"], 1e-9),
            "train_tokens": state["train_tokens"],  # summed over DDP ranks, like the throughput
            "group_by_length": bool(cfg.task.get("group_by_length", False)), "cpu_dropout": cpu_dropout(),
            "threads": torch.get_num_threads(), "cpu_heap": self.cpu_heap,
            "train_pad_fraction": _mean([h["pad_fraction"] for h in state["history"] if "pad_fraction" in h]),
            "peak_mem_mb": peak, "peak_mem_kind": "cuda_max_allocated" if self.device.type == "cuda" else "cpu_max_rss",
            "device": device_name(self.device), "precision": self.precision, "torch": torch.__version__,
            "git_sha": git_sha(), "wall_s": wall, "train_s": state["train_time"], "data_info": self.task.data_info(),
            "config_hash": config_hash(cfg), "baselines": self.task.reference_metrics(),
        }
