"""Probes and the structural claim about additive attention.

* the generators are deterministic and their labels are right by construction (checked by independent solvers);
* a tiny softmax-attention model learns a short MQAR instance (so the probe is learnable by a model with per-pair
  interactions: a failure of other mixers is about the mixer, not the data);
* structural test: in Fastformer's official layer (and the paper form, and the pooling baseline) output i depends on
  the other tokens only through the pooled global vectors -- two inputs built to have equal global vectors and equal
  x_i give equal output i, while softmax attention on the same pair of inputs does not;
* the pooling baseline's options match its slow reference.
"""
from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
import torch

import fastformer.mixers  # noqa: F401  (registers every mixer)
from fastformer.cells import cells
from fastformer.data.probes import IGNORE, PAD, ProbeDataset, make_item, probe_info
from fastformer.mixers import build_mixer
from fastformer.tasks.probe import ProbeModel, probe_loss_and_correct

CASES = [("mqar", dict(n_pairs=4, vocab=40)), ("dup", dict(vocab=200)), ("dup", dict(vocab=200, mode="query")),
         ("majority", dict(n_symbols=5)), ("listops", dict(max_depth=4, max_args=4))]


@pytest.mark.parametrize("kind,params", CASES)
def test_generators_are_deterministic_and_split_separated(kind, params):
    a = make_item(kind, 33, seed=7, split="train", idx=5, **params)
    b = make_item(kind, 33, seed=7, split="train", idx=5, **params)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    items = [make_item(kind, 33, seed=7, split=s, idx=5, **params)[0] for s in ("val", "test")]
    items += [make_item(kind, 33, seed=8, split="train", idx=5, **params)[0]]
    assert any(not np.array_equal(a[0], it) for it in items)  # other split / seed -> another item
    small = ProbeDataset(kind, seq_len=33, n_samples=4, seed=7, split="train", **params)
    big = ProbeDataset(kind, seq_len=33, n_samples=9, seed=7, split="train", **params)
    assert torch.equal(small.ids, big.ids[:4]) and torch.equal(small.target, big.target[:4])  # sizes nest
    assert small.ids.max() < probe_info(kind, **params).vocab_size and torch.equal(small.mask, small.ids != PAD)


@pytest.mark.parametrize("seq_len", [15, 64, 700])
def test_mqar_targets_are_the_paired_values(seq_len):
    for idx in range(20):
        ids, target, _ = make_item("mqar", seq_len, seed=0, split="train", idx=idx, n_pairs=5, vocab=64)
        pairs = {int(ids[2 * p]): int(ids[2 * p + 1]) for p in range(5)}  # key -> value, solved independently
        assert len(pairs) == 5 and len(set(pairs.values())) == 5
        asked = np.flatnonzero(target != IGNORE)
        assert len(asked) == 5 and asked.min() >= 10
        assert all(target[i] == pairs[int(ids[i])] for i in asked)


def test_dup_and_majority_labels():
    labels = {"any": [], "query": []}
    for idx in range(200):
        for mode in labels:
            ids, y, _ = make_item("dup", 50, seed=1, split="train", idx=idx, vocab=100, mode=mode)
            truth = len(set(ids.tolist())) < 50 if mode == "any" else int(ids[0]) in ids[1:].tolist()
            assert y == int(truth) and len(set(ids.tolist())) >= 49
            labels[mode].append(y)
        ids, y, _ = make_item("majority", 60, seed=1, split="train", idx=idx, n_symbols=6, margin=0.0)
        counts = np.bincount(ids - 1, minlength=6)
        assert counts[y] == counts.max() and (counts == counts.max()).sum() == 1
    assert all(0.35 < np.mean(v) < 0.65 for v in labels.values())  # balanced


def _eval_listops(ids: list[int]) -> int:
    """Independent stack evaluator of the token ids (digits 1..10, [MAX [MIN [MED [SM 11..14, ] 15)."""
    stack: list = []
    for t in ids:
        if t == 15:
            args = []
            while not isinstance(stack[-1], str):
                args.append(stack.pop())
            op = stack.pop()
            s = sorted(args)
            stack.append({"MAX": s[-1], "MIN": s[0], "SM": sum(s) % 10,
                          "MED": int(np.floor((s[(len(s) - 1) // 2] + s[len(s) // 2]) / 2))}[op])
        elif t >= 11:
            stack.append(("MAX", "MIN", "MED", "SM")[t - 11])
        else:
            stack.append(t - 1)
    assert len(stack) == 1
    return stack[0]


def test_listops_labels_and_lengths():
    for idx in range(100):
        ids, y, mask = make_item("listops", 80, seed=2, split="val", idx=idx, max_depth=5, max_args=4, min_len=20)
        n = int(mask.sum())
        assert 20 <= n <= 80 and (ids[n:] == PAD).all()
        assert _eval_listops(ids[:n].tolist()) == y


def test_bad_probe_options_raise_naming_the_field():
    with pytest.raises(ValueError, match="seq_len"):
        make_item("mqar", 10, seed=0, split="train", idx=0, n_pairs=4, vocab=64)
    with pytest.raises(ValueError, match="vocab"):
        make_item("dup", 50, seed=0, split="train", idx=0, vocab=20)
    with pytest.raises(KeyError, match="valid probes"):
        make_item("nope", 10, seed=0, split="train", idx=0)


def test_softmax_attention_learns_short_mqar():
    """2-layer softmax attention (no FFN, pre-norm) solves MQAR(L=10, 2 pairs): the probe is learnable.

    About 10 s of CPU on one core: the model sits at chance (~50%, two candidate values) for a few hundred steps, then
    the key-matching circuit forms and accuracy jumps to ~100%."""
    torch.manual_seed(1)
    L, V = 10, 16
    tr = ProbeDataset("mqar", seq_len=L, n_samples=4000, seed=0, split="train", n_pairs=2, vocab=V)
    va = ProbeDataset("mqar", seq_len=L, n_samples=500, seed=0, split="val", n_pairs=2, vocab=V)
    m = ProbeModel(level="token", vocab_size=V, n_classes=V, d_model=64, n_heads=4, max_len=L, mixer="transformer",
                   dropout=0.0, encoder=dict(n_layers=2, use_ffn=False, norm_position="pre", final_norm=True,
                                             norm_eps=1e-5))
    opt = torch.optim.Adam(m.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    acc = 0.0
    for step in range(1, 1201):
        idx = torch.randint(len(tr), (64,), generator=g)
        loss, _, _ = probe_loss_and_correct(m(tr.ids[idx], tr.mask[idx]), tr.target[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            with torch.no_grad():
                _, correct, asked = probe_loss_and_correct(m.eval()(va.ids, va.mask), va.target)
            m.train()
            acc = correct / asked
            if acc > 0.97:
                break
    assert acc > 0.97, f"softmax attention reached only {acc:.1%} on MQAR after {step} steps"


# ------------------------------------------------------------------------------------------- structural claim
def _score_rows(m, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """Linear maps (r, D) whose null space holds the perturbations d of one token that leave its pooling scores
    (and so every pooling weight) unchanged, given the input x whose global query is held fixed."""
    h, dh = m.n_heads, m.d_head
    if m.mixer_name == "pooling_baseline":  # score_h = w_h . (W_v x)_h
        return torch.stack([m.w[i] @ m.value.weight[i * dh:(i + 1) * dh] for i in range(h)])  # (h, D)
    q = m.query(x)  # (1, N, D)
    if m.variant == "official":
        alpha = torch.softmax(m.query_att(q) * m.scale, dim=1)  # (1, N, h)
        q_glob = torch.einsum("bnh,bnhd->bhd", alpha, q.view(1, -1, h, dh)).reshape(-1)  # (D,)
        a1 = m.query_att.weight @ m.query.weight  # (h, D): d -> change of the query scores
        a2 = m.key_att.weight @ (q_glob[:, None] * m.key.weight)  # (h, D): d -> change of the key scores
        return torch.cat([a1, a2])
    q_glob = m._pool(q.view(1, -1, h, dh), m.w_q, None).reshape(h, dh)  # paper form, per-head score vectors
    sl = [slice(i * dh, (i + 1) * dh) for i in range(h)]
    a1 = torch.stack([m.w_q[i] @ m.query.weight[sl[i]] for i in range(h)])
    a2 = torch.stack([(m.w_k[i] * q_glob[i]) @ m.key.weight[sl[i]] for i in range(h)])
    return torch.cat([a1, a2])


STRUCTURAL = [("fastformer", dict(variant="official", sharing="qv")), ("fastformer", dict(sharing="qv")),
              ("pooling_baseline", {})]


@pytest.mark.parametrize("name,kw", STRUCTURAL, ids=["fastformer-official", "fastformer-paper", "pooling_baseline"])
def test_output_depends_on_other_tokens_only_through_global_vectors(name, kw):
    """Positions fixed (x already holds them), tokens j and l both equal c in input A; in input B they are c + d and
    c - d, with d in the null space of every pooling score. Then both tokens keep equal pooling weights, every pooled
    vector (sum_i w_i f(x_i) with f affine) is unchanged, so every other output must be unchanged -- although the
    inputs differ by a large amount. Softmax attention on the same inputs changes every output."""
    torch.manual_seed(0)
    D, H, N, j, l = 32, 4, 12, 3, 8  # noqa: E741  (tokens j and l of the docstring)
    m = build_mixer(name, d_model=D, n_heads=H, **kw).double().eval()
    with torch.no_grad():  # larger weights than the N(0, 0.02) init, so the pooling weights are far from uniform
        for p in m.parameters():
            p.normal_(0.0, 0.5)
    xa = torch.randn(1, N, D, dtype=torch.float64)
    xa[0, l] = xa[0, j]
    rows = _score_rows(m, xa, xa[0, j])  # (r, D), r = h or 2h < D
    null = torch.linalg.svd(rows).Vh[rows.shape[0]:]  # (D - r, D): orthonormal basis of the null space
    d = 3.0 * torch.randn(null.shape[0], dtype=torch.float64) @ null  # (D,) a large perturbation
    xb = xa.clone()
    xb[0, j], xb[0, l] = xa[0, j] + d, xa[0, j] - d
    with torch.no_grad():
        ya, yb = m(xa), m(xb)
        others = [i for i in range(N) if i not in (j, l)]
        torch.testing.assert_close(ya[0, others], yb[0, others], rtol=1e-9, atol=1e-9)
        assert (ya[0, j] - yb[0, j]).abs().max() > 1e-2  # token j itself did change
        soft = build_mixer("transformer", d_model=D, n_heads=H).double().eval()
        for p in soft.parameters():
            p.normal_(0.0, 0.5)
        ctrl = (soft(xa) - soft(xb))[0, others].abs().amax(-1)  # (N-2,)
    assert (ctrl > 1e-3).all(), "control: softmax attention should see the change at every position"


@pytest.mark.parametrize("gate", ["sigmoid", "product", "none"])
@pytest.mark.parametrize("broadcast", [True, False])
def test_pooling_baseline_options_match_reference(gate, broadcast):
    if gate == "none" and not broadcast:
        with pytest.raises(ValueError, match="mixes no tokens"):
            build_mixer("pooling_baseline", d_model=16, n_heads=2, gate=gate, broadcast=broadcast)
        return
    ref = importlib.import_module("fastformer.mixers.naive.pooling_baseline").reference
    torch.manual_seed(0)
    m = build_mixer("pooling_baseline", d_model=16, n_heads=2, gate=gate, broadcast=broadcast).double()
    x = torch.randn(2, 9, 16, dtype=torch.float64)
    mask = torch.arange(9)[None] < torch.tensor([[9], [4]])  # (2, 9)
    torch.testing.assert_close(m(x, mask)[mask], ref(m, x, mask)[mask], rtol=1e-9, atol=1e-10)


# ------------------------------------------------------------------------------------------- configs + tables
CONFIGS = Path(__file__).resolve().parents[1] / "configs"
PROBE_EXPERIMENTS = [c.split("/")[1] for c in cells() if c.startswith("probe/")]


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


@pytest.mark.parametrize("row", PROBE_EXPERIMENTS)
def test_every_probe_experiment_composes_builds_and_trains_one_step(row):
    from fastformer.tasks.probe import ProbeTask
    cfg = _compose([f"experiment=probe/{row}", "data=probe_mqar", "data.seq_len=32", "data.n_train=8",
                    "data.n_eval=8", "model.d_model=32", "model.n_heads=2", "logger=none"])
    assert cfg.experiment_name == f"probe/probe_mqar/L32_P4/{row}" and cfg.task.name == "probe"
    task = ProbeTask(cfg)
    task.setup()
    model = task.build_model()
    loss, n_tokens = task.training_step(model, next(iter(task.loader("train"))))
    loss.backward()
    assert torch.isfinite(loss) and n_tokens == 8 * 32
    with torch.no_grad():
        metrics = task.evaluate(model.eval(), "val")
    assert 0.0 <= metrics["acc"] <= 100.0 and task.data_info()["probe"] == "mqar"


def test_ablation_experiments_override_only_the_mixer():
    full = _compose(["experiment=imdb/fastformer", "ablation=sharing_qv"])
    assert full.model.mixer.sharing == "qv" and full.experiment_name == "imdb/sharing_qv" and full.row == "sharing_qv"
    pb = _compose(["experiment=amazon/pooling_baseline"])
    assert pb.model.mixer.name == "pooling_baseline" and pb.data.name == "amazon"


def test_tables_from_runs(tmp_path):
    import json

    from fastformer.results import ablations, probes

    def write(exp, task, seed, acc, **extra):
        d = tmp_path / "runs" / exp / f"seed{seed}"
        d.mkdir(parents=True)
        parts = exp.split("/")
        ds = parts[1] if parts[0] == "probe" else parts[0]
        row = {"dataset": ds, "row": parts[-1], "mixer": None}
        (d / "metrics.json").write_text(json.dumps({"task": task, "experiment": exp, "seed": seed, "params": 10, **row,
                                                    "test": {"acc": acc, "macro_f1": acc - 20}, **extra}))
    for s, base in ((1, 60.0), (2, 62.0)):
        write("imdb/fastformer", "classification", s, base)
        write("imdb/no_key_branch", "classification", s, base - 3.0)
    info = {"data_info": {"probe": "mqar", "seq_len": 64, "pairs_axis": False, "params": {"n_pairs": 4}}}
    write("probe/probe_mqar/L64/transformer", "probe", 1, 99.0, **info)
    write("probe/probe_mqar/L64/fastformer", "probe", 1, 30.0, **info)
    md = ablations.build(tmp_path / "runs", tmp_path / "out", "quick").read_text()
    assert "| no key branch (pooling + gating) | — | — | — | 58.00 ± 1.41 | -3.00 | 10 |" in md  # paired Δ per seed
    assert "54.10" in md and (tmp_path / "out" / "ablations.png").stat().st_size > 0
    md = probes.build(tmp_path / "runs", tmp_path / "out", "quick").read_text()
    assert "L=64: solved by transformer; not solved by fastformer." in md and "(4: 25.0%)" in md
    assert (tmp_path / "out" / "probes.png").exists() and (tmp_path / "out" / "probes.csv").exists()
