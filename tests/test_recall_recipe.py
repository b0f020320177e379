"""The MQAR recall recipe: vectorised block generator, fresh data per epoch, the encoder's token shift, the n_pairs
axis of the probes table, the token-interaction measurement, and a tiny end-to-end smoke of the probes_recall stage."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from fastformer.analysis.interaction import Interaction, effective_rank, first_mixer_sensitivity
from fastformer.data.probes import BLANK, BLOCK, IGNORE, ProbeDataset, make_item
from fastformer.models.encoder import Encoder
from fastformer.tasks.probe import ProbeModel

ROOT = Path(__file__).resolve().parents[1]


def test_mqar_blocks_are_valid_nested_and_match_make_item():
    P, L, V = 5, 24, 40
    ds = ProbeDataset("mqar", seq_len=L, n_samples=BLOCK + 50, seed=3, split="train", n_pairs=P, vocab=V)
    part = ProbeDataset("mqar", seq_len=L, n_samples=100, seed=3, split="train", start=BLOCK - 30, n_pairs=P, vocab=V)
    assert len(part) == 100 and torch.equal(part.ids[:80], ds.ids[BLOCK - 30:])  # a window across the block boundary
    ids, target, _ = make_item("mqar", L, seed=3, split="train", idx=BLOCK + 7, n_pairs=P, vocab=V)
    assert np.array_equal(ids, ds.ids[BLOCK + 7].numpy()) and np.array_equal(target, ds.target[BLOCK + 7].numpy())
    n_keys = (V - 2) // 2
    for i in range(0, len(ds), 97):
        x, y = ds.ids[i].numpy(), ds.target[i].numpy()
        keys, values = x[0:2 * P:2], x[1:2 * P:2]
        assert len(set(keys)) == P and len(set(values)) == P
        assert ((keys >= 2) & (keys < 2 + n_keys)).all() and ((values >= 2 + n_keys) & (values < V)).all()
        asked = np.flatnonzero(y != IGNORE)
        assert len(asked) == P and (asked >= 2 * P).all()
        for q in asked:  # every query is a key of this sequence and its target the paired value
            assert y[q] == values[list(keys).index(x[q])]
        assert (x[2 * P:][y[2 * P:] == IGNORE] == BLANK).all()
    other = ProbeDataset("mqar", seq_len=L, n_samples=50, seed=3, split="test", n_pairs=P, vocab=V)
    assert not torch.equal(other.ids, ds.ids[:50])


def test_fresh_per_epoch_draws_new_sequences(tmp_path):
    from hydra import compose, initialize_config_dir

    from fastformer.tasks.probe import ProbeTask
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=["experiment=probe/transformer", "data=probe_mqar",
                                                      "data.n_train=40", "data.n_eval=8", "logger=none"])
    task = ProbeTask(cfg)
    task.setup()
    e0, e1, e1b = task.train_dataset(0), task.train_dataset(1), task.train_dataset(1)
    assert len(e1) == 40 and torch.equal(e1.ids, e1b.ids) and not torch.equal(e0.ids, e1.ids)
    both = ProbeDataset("mqar", seq_len=32, n_samples=80, seed=0, split="train", n_pairs=4, vocab=64)
    assert torch.equal(both.ids[40:], e1.ids)
    assert task.data_info()["fresh_per_epoch"] is True


def test_token_shift_adds_the_left_neighbour_and_ignores_padding():
    torch.manual_seed(0)
    enc = Encoder(d_model=8, n_heads=2, n_layers=1, mixer="transformer", token_shift=True, pos_emb="none",
                  input_norm=False, dropout=0.0).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    h = enc.stem(x)
    torch.testing.assert_close(h[:, 0], x[:, 0] + enc.shift.bias)
    torch.testing.assert_close(h[:, 3], x[:, 3] + enc.shift(x[:, 2]))
    mask = torch.tensor([[False, True, True, True, True, True]] * 2)  # left padding
    y1 = enc(x, mask)
    x2 = x.clone()
    x2[:, 0] = 100.0  # padded content must not reach a real token
    torch.testing.assert_close(enc(x2, mask)[mask], y1[mask])


def test_effective_rank_and_interaction_summary():
    assert effective_rank(torch.eye(6), 0.9) == 6 and effective_rank(torch.ones(6, 6), 0.99) == 1
    assert effective_rank(torch.zeros(3, 3), 0.9) == 0
    s = Interaction.of([torch.eye(4) + 0.1 * torch.ones(4, 4)])
    assert s.n_tokens == 4 and s.offdiag_rank99 >= 1 and 0 < s.offdiag_share < 0.2


def test_sensitivity_of_a_pooling_mixer_is_low_rank_off_the_diagonal():
    """The measurement sees the structure it is meant to see: the pooling baseline mixes tokens only through one
    pooled vector per head, so the Jacobian of token i on the other tokens factorises; softmax attention's does not."""
    torch.manual_seed(0)
    kw = dict(level="token", vocab_size=40, n_classes=40, d_model=16, n_heads=1, max_len=12, dropout=0.0,
              encoder=dict(n_layers=1, use_ffn=False, norm_position="pre", input_norm=False))
    ids = torch.randint(2, 40, (12,))
    mask = torch.ones(12, dtype=torch.bool)
    ranks = {}
    for mixer in ("pooling_baseline", "transformer"):
        m = ProbeModel(mixer=mixer, **kw).double()
        with torch.no_grad():  # larger weights than the init, so attention is far from uniform
            for p in m.parameters():
                p.mul_(20.0)
        j = first_mixer_sensitivity(m, ids, mask)
        assert j.shape == (12, 12) and torch.isfinite(j).all()
        ranks[mixer] = effective_rank(j - torch.diag(torch.diagonal(j)), 0.99)
    assert ranks["pooling_baseline"] < ranks["transformer"]


def test_probes_table_has_the_n_pairs_axis(tmp_path):
    from fastformer.results import probes

    def write(row, P, seed, acc):
        d = tmp_path / "runs" / f"probe/probe_mqar/L32_P{P}/{row}" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({
            "task": "probe", "experiment": f"probe/probe_mqar/L32_P{P}/{row}", "seed": seed, "params": 10,
            "dataset": "probe_mqar", "mixer": row, "row": row, "test": {"acc": acc},
            "data_info": {"probe": "mqar", "seq_len": 32, "params": {"n_pairs": P, "vocab": 64},
                          "fresh_per_epoch": True, "n_train": 100}}))
    for seed in (1, 2, 3):
        for P in (2, 4, 8):
            write("transformer", P, seed, 99.5 + 0.1 * seed)
            write("fastformer", P, seed, 100.0 / P + seed)
    md = probes.build(tmp_path / "runs", tmp_path / "out", "quick").read_text()
    assert "| Mixer | P=2 | P=4 | P=8 | n | params |" in md
    assert "| transformer | 99.7 ± 0.1 | 99.7 ± 0.1 | 99.7 ± 0.1 | 3 | 10 |" in md
    assert "P=8: solved by transformer; not solved by fastformer." in md
    assert "vocabulary 3.2%" in md and "8: 12.5%" in md
    assert (tmp_path / "out" / "probes.png").stat().st_size > 0


def test_probes_recall_stage_smoke(tmp_path):
    """The probes_recall sweep at tiny size, end to end through scripts/train.py, then its table with the
    token-interaction section computed from the trained checkpoints."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled"}
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "-m", "+sweep=probes_recall", "preset=quick",
           "experiment=probe/transformer,probe/fastformer", "data=probe_mqar", "data.params.n_pairs=2,4",
           "data.n_train=64", "data.n_eval=16", "trainer.max_epochs=2", "seed=1", "logger=none",
           "trainer.progress_bar=false", f"hydra.sweep.dir={tmp_path / 'runs'}"]
    subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    ms = sorted((tmp_path / "runs").rglob("metrics.json"))
    assert len(ms) == 4
    m = json.loads(ms[0].read_text())
    assert m["data_info"]["fresh_per_epoch"] and len(m["history"]) == 2
    from fastformer.results import probes
    md = probes.build(tmp_path / "runs", tmp_path / "out", "quick").read_text()
    assert "| Mixer | P=2 | P=4 | n | params |" in md and "## Token interaction" in md
    assert (tmp_path / "out" / "probes_interaction.png").stat().st_size > 0
    # a fresh checkout holds only the committed outcomes (metrics.json, interaction.json; no checkpoints): the
    # rebuilt table keeps the token-interaction section, from the cached measurements
    import shutil
    for ck in (tmp_path / "runs").rglob("checkpoints"):
        shutil.rmtree(ck)
    again = probes.build(tmp_path / "runs", tmp_path / "out2", "quick").read_text()
    section = md.split("## Token interaction")[1].split("\n## ")[0]
    assert section == again.split("## Token interaction")[1].split("\n## ")[0]


def test_budget_section_counts_each_stages_finished_runs(tmp_path):
    """results/probes.md states every budgeted stage of the preset (configs/reproduce/reproduce.yaml stage_budget)
    with how many of its runs have finished: a causal run counts for probes_causal, an MQAR run at L=128 for
    probes_length, an MQAR run at L=32 (probes_recall) for neither."""
    from omegaconf import OmegaConf

    from fastformer.results import probes

    budget = OmegaConf.load(ROOT / "configs" / "reproduce" / "reproduce.yaml").stage_budget
    assert set(budget.quick) <= set(probes.STAGE_RUNS)
    for i, (L, causal) in enumerate(((64, True), (128, False), (32, False))):
        d = tmp_path / "runs" / f"r{i}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({
            "task": "probe", "dataset": "probe_mqar_zoology" if causal else "probe_mqar", "mixer": "transformer",
            "row": "transformer", "seed": 1, "test": {"acc": 50.0}, "val": {"acc": 50.0},
            "data_info": {"seq_len": L, "causal": causal, "lr": 1e-3, "params": {"n_pairs": 4}}}))
    md = probes.build(tmp_path / "runs", tmp_path / "out", "quick").read_text()
    section = md.split("## Stages under way: budget and progress")[1]
    assert f"| `probes_causal` | 1 of {budget.quick.probes_causal.runs} |" in section
    assert f"| `probes_length` | 1 of {budget.quick.probes_length.runs} |" in section


def test_the_length_axis_reads_the_mqar_panels_across_L(tmp_path):
    """issue #23 item 4: the MQAR panels (one per L) sort by L as a number, and a section reads them across L at 4
    pairs with the control's verdict per length; a length whose control misses 99% is said to decide nothing."""
    from fastformer.results import probes

    def write(row, L, seed, acc):
        d = tmp_path / "runs" / f"probe/probe_mqar/L{L}_P4/{row}" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({
            "task": "probe", "seed": seed, "params": 10, "dataset": "probe_mqar", "mixer": row, "row": row,
            "test": {"acc": acc}, "data_info": {"probe": "mqar", "seq_len": L, "params": {"n_pairs": 4, "vocab": 64},
                                                "fresh_per_epoch": True, "n_train": 100}}))
    for seed in (1, 2, 3):
        for L in (32, 64, 128, 256):
            write("transformer", L, seed, 100.0 if L < 256 else 60.0 + seed)
            write("fastformer", L, seed, 25.0 + 0.1 * seed)
    md = probes.build(tmp_path / "runs", tmp_path / "out", "quick").read_text()
    heads = [line for line in md.splitlines() if line.startswith("## Multi-query associative recall")]
    assert [h.split("L=")[1].split(" ")[0] for h in heads] == ["32", "64", "128", "256"]
    section = md.split("## MQAR at 4 pairs along the sequence length")[1].split("\n## ")[0]
    assert "| Mixer | L=32 | L=64 | L=128 | L=256 | n |" in section
    assert "| fastformer | 25.2 ± 0.1 | 25.2 ± 0.1 | 25.2 ± 0.1 | 25.2 ± 0.1 | 3 |" in section
    assert "- L=128: the control solves it; solved (>= 90%) by transformer; within 2 points of the in-context " \
           "chance 25%: fastformer." in section
    assert "- L=256: **the control does not reach 99%: this length decides nothing**" in section
