"""Distributed training that provably equals one process: 2 gloo processes on CPU against a 1-process run at the
same global batch (same per-epoch losses, validation metrics, token counts and final parameters), rank 0 alone
logging, and a DDP run interrupted after one epoch and resumed ending where the uninterrupted one ends."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# a sequence-level probe (one target per sequence: the loss is a per-sample mean) without dropout, 4 global batches
# of 16 per epoch; each of the 2 ranks gets 8 samples of every global batch. SGD, not Adam: Adam turns the rounding
# noise on zero-gradient parameters (key biases under softmax) into lr-sized steps (configs/optimizer/sgd.yaml).
RUN = ["experiment=probe/transformer", "data=probe_dup", "data.seq_len=16", "data.n_train=64", "data.n_eval=32",
       "model.d_model=16", "model.n_heads=2", "model.encoder.d_ff=32", "task.batch_size=16", "trainer.max_epochs=2",
       "trainer.device=cpu", "trainer.progress_bar=false", "logger=none", "optimizer=sgd"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "offline", "WANDB_SILENT": "true"}


def _launch(run_dir: Path, nproc: int, *extra: str) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] \
        if nproc > 1 else [sys.executable]
    out = subprocess.run([*launcher, str(ROOT / "scripts" / "train.py"), *RUN, f"hydra.run.dir={run_dir}", *extra],
                         cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    path = run_dir / "metrics.json"
    return json.loads(path.read_text()) if path.exists() else {}


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    return torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=False)["model"]


@pytest.fixture(scope="module")
def one_and_two(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    return (_launch(tmp / "one", 1), tmp / "one"), (_launch(tmp / "two", 2, "logger=wandb"), tmp / "two"), tmp


def test_two_gloo_processes_equal_one_process(one_and_two):
    (m1, d1), (m2, d2), _ = one_and_two
    assert m1["world_size"] == 1 and m2["world_size"] == 2 and m2["eval_shards"] == 2  # val/test sharded, gathered
    for h1, h2 in zip(m1["history"], m2["history"], strict=True):
        assert h2["train_loss"] == pytest.approx(h1["train_loss"], rel=1e-5, abs=1e-6)
        assert h2["val_acc"] == pytest.approx(h1["val_acc"], abs=1e-9)
    assert m2["train_tokens"] == m1["train_tokens"] == 2 * 64 * 16  # summed over ranks: every sequence once
    assert m2["test"] == pytest.approx(m1["test"], rel=1e-5) and m2["best_epoch"] == m1["best_epoch"]
    p1, p2 = _params(d1), _params(d2)
    assert p1.keys() == p2.keys()
    for k in p1:
        torch.testing.assert_close(p2[k], p1[k], rtol=1e-5, atol=1e-6, msg=f"parameter {k}")


def test_rank_zero_alone_logs_and_writes(one_and_two):
    _, (_, d2), _ = one_and_two
    runs = list((d2 / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, runs  # one W&B run, not one per rank
    assert not (d2 / "failed.json").exists() and (d2 / "metrics.json").exists()


@pytest.mark.slow  # ~15 s on 2 cores; make test-full runs it
def test_ddp_resume_after_one_epoch_ends_where_the_uninterrupted_run_ends(one_and_two):
    _, (m2, d2), tmp = one_and_two
    part = tmp / "resumed"
    assert _launch(part, 2, "trainer.stop_after_epochs=1") == {}  # stopped after epoch 1: no metrics.json yet
    assert torch.load(part / "checkpoints" / "last.pt", weights_only=False)["state"]["epoch"] == 1
    m = _launch(part, 2)
    assert [h["epoch"] for h in m["history"]] == [1, 2]
    assert m["history"][1]["train_loss"] == pytest.approx(m2["history"][1]["train_loss"], rel=1e-6)
    p, q = _params(part), _params(d2)
    for k in p:
        torch.testing.assert_close(p[k], q[k], rtol=1e-6, atol=1e-7, msg=f"parameter {k}")


def test_global_batch_sampler_is_the_one_process_order_split_over_ranks():
    from torch.utils.data import RandomSampler

    from fastformer.train.distributed import GlobalBatchSampler

    one = list(RandomSampler(range(37), generator=torch.Generator().manual_seed(5)))
    assert list(GlobalBatchSampler(37, global_batch=8, rank=0, world=1, generator_seed=5)) == one
    r0, r1 = (list(GlobalBatchSampler(37, global_batch=8, rank=r, world=2, generator_seed=5)) for r in (0, 1))
    for b in range(4):  # each full global batch: rank 0 its first half, rank 1 its second
        assert r0[4 * b:4 * b + 4] + r1[4 * b:4 * b + 4] == one[8 * b:8 * b + 8]
    assert sorted(r0 + r1) == list(range(37))  # the tail of 5 split 3 + 2: nothing lost, nothing twice
    with pytest.raises(ValueError, match="divisible"):
        GlobalBatchSampler(10, global_batch=5, rank=0, world=2, generator_seed=0)


def test_sharded_classification_and_probe_evaluation_equal_whole(compose_cfg, fixture_root, tmp_path,
                                                                  check_sharded_eval):
    from fastformer.tasks.classification import ClassificationTask
    from fastformer.tasks.probe import ProbeTask

    for task_cls, over in ((ClassificationTask, ["experiment=amazon/fastformer", f"data.root={fixture_root}",
                                                 f"paths.cache_dir={tmp_path}/cache", "task.eval_batch_size=7"]),
                           (ProbeTask, ["experiment=probe/fastformer", "data=probe_mqar", "data.seq_len=32",
                                        "data.n_eval=37", "task.eval_batch_size=8"])):
        torch.manual_seed(0)
        task = task_cls(compose_cfg([*over, "model.d_model=16", "model.n_heads=2", "logger=none"]))
        task.setup()
        for split in ("val", "test"):
            check_sharded_eval(task, task.build_model(), split, world=3)
