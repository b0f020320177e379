"""Causal MQAR on Zoology's settings: the generator's distribution, the head at query positions only, the trainer's
stop at a validation target, and a tiny end-to-end run of the probe_causal experiment into its results section."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from fastformer.data.probes import BLOCK, IGNORE, ProbeDataset, make_item

ROOT = Path(__file__).resolve().parents[1]


def test_mqar_zoology_items():
    P, L, V = 4, 64, 8192
    ds = ProbeDataset("mqar_zoology", seq_len=L, n_samples=BLOCK + 20, seed=0, split="train", n_pairs=P, vocab=V)
    ids, target, mask = make_item("mqar_zoology", L, seed=0, split="train", idx=BLOCK + 3, n_pairs=P, vocab=V)
    assert np.array_equal(ids, ds.ids[BLOCK + 3].numpy()) and mask.all()
    slots = np.zeros((L - 2 * P) // 2)
    for i in range(0, len(ds), 7):
        x, y = ds.ids[i].numpy(), ds.target[i].numpy()
        keys, values = x[0:2 * P:2], x[1:2 * P:2]
        assert len(set(keys)) == P and len(set(values)) == P and (x > 0).all()
        assert ((keys >= 1) & (keys < V // 2)).all() and ((values >= V // 2) & (values < V)).all()
        asked = np.flatnonzero(y != IGNORE)
        assert len(asked) == P and ((asked - 2 * P) % 2 == 0).all() and (asked >= 2 * P).all()
        assert sorted(x[asked]) == sorted(keys)  # every key queried once
        for q in asked:
            assert y[q] == values[list(keys).index(x[q])]
        slots[(asked - 2 * P) // 2] += 1
    assert slots[0] > 3 * slots[-5:].mean()  # power law: near queries far more often than far ones


def test_head_only_at_query_positions_equals_full_head():
    from fastformer.tasks.probe import ProbeModel

    torch.manual_seed(0)
    m = ProbeModel(level="token", vocab_size=50, n_classes=50, d_model=16, n_heads=2, max_len=12,
                   encoder={"n_layers": 1, "use_ffn": False}, mixer="fastformer",
                   mixer_kwargs={"causal": True}, dropout=0.0).eval()
    ids = torch.randint(1, 50, (3, 12))
    at = torch.rand(3, 12) < 0.3
    torch.testing.assert_close(m(ids, None, at=at), m(ids, None)[at])


def test_stop_at_ends_training_and_the_causal_section(tmp_path):
    env = {**os.environ, "PROJECT_ROOT": str(ROOT), "WANDB_MODE": "disabled"}
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "experiment=probe_causal/transformer",
           "data=probe_mqar_zoology_L64", "data.n_train=128", "data.n_eval=64", "data.params.vocab=64",
           "model.d_model=16", "model.n_heads=2", "trainer.max_epochs=3", "trainer.stop_at=0.0",
           "trainer.progress_bar=false", "trainer.threads=1", "logger=none",
           f"hydra.run.dir={tmp_path}/runs/probe_causal/x/seed1"]
    subprocess.run(cmd, check=True, cwd=ROOT, env=env, capture_output=True)
    m = json.loads((tmp_path / "runs/probe_causal/x/seed1/metrics.json").read_text())
    assert m["epochs_run"] == 1 and m["reached_stop_at"] == 1 and m["data_info"]["causal"] is True
    assert m["data_info"]["lr"] == 2.2e-3 and m["data_info"]["weight_decay"] == 0.1
    from fastformer.results.probes import build

    md = build(tmp_path / "runs", tmp_path / "out", "quick").read_text()
    assert "## Causal MQAR on Zoology's settings" in md and "| (64, 4) | transformer |" in md
    assert "The control fails at (L, pairs) = (64, 4)" in md  # 1 epoch of 128 sequences: far from 99%
    assert (tmp_path / "out" / "probes_causal.csv").exists()
