"""Length-grouped batching (fastformer/train/sampling.py): every example once per epoch, seeded, the same global
batches under DDP as in one process, far less padding than random batches; evaluation longest-first gives the same
metrics as the file order."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import RandomSampler

from fastformer.train.sampling import LengthGroupedBatchSampler, global_batches, length_order, padded_fraction

ROOT = Path(__file__).resolve().parents[1]


def _lengths(n=1000, seed=0):
    return np.random.default_rng(seed).lognormal(5.3, 0.7, size=n).astype(int).clip(5, 512)  # IMDB-like


def test_every_example_once_and_seeded():
    lens = _lengths()
    a = LengthGroupedBatchSampler(lens, global_batch=64, seed=3, pool=5)
    b = LengthGroupedBatchSampler(lens, global_batch=64, seed=3, pool=5)
    c = LengthGroupedBatchSampler(lens, global_batch=64, seed=4, pool=5)
    flat = [i for batch in a for i in batch]
    assert sorted(flat) == list(range(len(lens)))
    assert list(a) == list(b) and list(a) != list(c)
    assert max(len(x) for x in a) == 64 and len(a) == -(-len(lens) // 64)


def test_grouping_cuts_padding():
    lens = _lengths(4000)
    random = padded_fraction(global_batches(len(lens), 64, seed=1), lens)
    grouped = LengthGroupedBatchSampler(lens, global_batch=64, seed=1, pool=50).padded_fraction
    assert random > 0.35 and grouped < 0.05, (random, grouped)
    # batches are not in length order: the pools' batches are shuffled
    firsts = [lens[b[0]] for b in LengthGroupedBatchSampler(lens, global_batch=64, seed=1, pool=50)]
    assert firsts != sorted(firsts, reverse=True)


def test_ddp_ranks_split_the_one_process_global_batches():
    lens = _lengths(700)
    one = LengthGroupedBatchSampler(lens, global_batch=64, seed=2, pool=4)
    ranks = [LengthGroupedBatchSampler(lens, global_batch=64, seed=2, pool=4, rank=r, world=4) for r in range(4)]
    for k, batch in enumerate(one):
        assert [i for r in ranks for i in list(r)[k]] == batch


def test_random_global_batches_are_random_sampler_order():
    gen_order = list(RandomSampler(range(300), generator=torch.Generator().manual_seed(9)))
    assert [i for b in global_batches(300, 64, seed=9) for i in b] == gen_order


def test_length_order_longest_first():
    lens = [3, 9, 1, 9, 4]
    assert length_order(lens) == [1, 3, 4, 0, 2]


def test_grouped_run_records_padding_and_matches_file_order_eval(tmp_path):
    """A run with task.group_by_length=true trains, records its padded fraction, and its test metrics equal an
    evaluation of the same best checkpoint in file order (the metrics do not depend on the evaluation order)."""
    from fastformer.data.fixtures import write_text_tables

    write_text_tables(tmp_path, n_per_class=60)
    run = tmp_path / "run"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "data=text_jsonl",
                        f"data.root={tmp_path}", f"data.cache_dir={tmp_path / 'cache'}", "logger=none",
                        "trainer.max_epochs=2", "trainer.progress_bar=false", "task.group_by_length=true",
                        "task.batch_size=16", f"hydra.run.dir={run}"],
                       cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PROJECT_ROOT": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((run / "metrics.json").read_text())
    assert m["group_by_length"] is True
    assert 0.0 <= m["train_pad_fraction"] < 0.2 and all("pad_fraction" in h for h in m["history"])

    from hydra import compose, initialize_config_dir

    from fastformer.tasks.classification import ClassificationTask

    with initialize_config_dir(str(ROOT / "configs"), version_base="1.3"):
        cfg = compose("train", overrides=["data=text_jsonl", f"data.root={tmp_path}",
                                          f"data.cache_dir={tmp_path / 'cache'}"])
    task = ClassificationTask(cfg)
    task.setup()
    model = task.build_model()
    model.load_state_dict(torch.load(run / "checkpoints" / "best.pt", weights_only=False)["model"])
    model.eval()
    with torch.no_grad():
        file_order = task.evaluate(model, "test")
    assert file_order["acc"] == m["test"]["acc"]
