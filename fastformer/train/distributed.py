"""Distributed (DDP) plumbing in one place: process group set-up, rank/world, the global-batch sampler, reductions.

``torchrun --nproc_per_node=K scripts/train.py ...`` sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; everything else
here is a no-op in a single process. The training sampler makes a K-process run equal to a 1-process run at the same
global batch: every rank draws the same seeded permutation of an epoch and takes its contiguous slice of each global
batch (``task.batch_size`` is the global batch; each rank gets ``batch_size / K``), so the ranks' averaged gradients
are the 1-process gradient of the same samples (a per-sample mean loss, no dropout noise).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler

from fastformer.utils import resolve_device


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class DistContext:
    """Where this process runs: its rank, the number of processes, and its device (set up once per run)."""

    rank: int
    world: int
    device: torch.device

    @property
    def ddp(self) -> bool:
        return self.world > 1


def setup_distributed(device: str = "auto") -> DistContext:
    """The one place a run's process group and device are set up (scripts/train.py, once; the Trainer when built
    without one): initialises the process group when launched by torchrun (nccl on CUDA, gloo on CPU) and resolves
    ``trainer.device`` (:func:`resolve_device`); under DDP on CUDA each rank takes the GPU of its ``LOCAL_RANK``."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and not str(device).startswith("cpu") else "gloo"
        dist.init_process_group(backend)
    dev = resolve_device(device)
    if world_size() > 1 and dev.type == "cuda":
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(dev)
    return DistContext(rank(), world_size(), dev)


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every rank (identity in one process)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """Element-wise sum over ranks (identity in one process)."""
    if not dist.is_initialized():
        return list(values)
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` in one process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


class GlobalBatchSampler(Sampler[int]):
    """This rank's indices of a seeded epoch permutation, global batch by global batch.

    Epoch order = ``torch.randperm(n, generator=seed)``, the order a 1-process run uses; global batch ``b`` holds
    positions ``b*G .. b*G+G-1`` and rank ``r`` of ``K`` takes the ``r``-th of ``K`` equal slices (a last, partial
    global batch is split as evenly as possible; one smaller than ``K`` is dropped). Used with ``batch_size = G // K``.
    """

    def __init__(self, n: int, *, global_batch: int, rank: int, world: int, generator_seed: int):
        if global_batch % world:
            raise ValueError(f"task.batch_size={global_batch} (the global batch) must be divisible by the "
                             f"{world} processes; pick a multiple of {world}")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(generator_seed)).tolist()
        self.indices: list[int] = []  # this rank's share, drawn once (a sampler is built per epoch)
        for start in range(0, n, global_batch):
            batch = perm[start:start + global_batch]
            if len(batch) < world:  # a rank would get no sample and hang the others: drop this tail
                break
            k, extra = divmod(len(batch), world)
            lo = rank * k + min(rank, extra)
            self.indices += batch[lo:lo + k + (rank < extra)]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class ShardSampler(Sampler[int]):
    """Evaluation shard of rank ``r`` of ``K``: items ``r, r + K, r + 2K, ...`` -- every item exactly once over the
    ranks, no padding (unlike ``DistributedSampler``), so gathered records give the 1-process metrics."""

    def __init__(self, n: int, *, rank: int, world: int, order: list[int] | None = None):
        self.n, self.rank, self.world = n, rank, world
        self.order = order  # the split's evaluation order (e.g. longest first); None = 0 .. n-1

    def __iter__(self) -> Iterator[int]:
        idx = range(self.rank, self.n, self.world)
        return iter(idx if self.order is None else [self.order[i] for i in idx])

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world))
