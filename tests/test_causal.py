"""Causal mixers (``causal=True``): equal to their O(N^2) masked references in float64 (forward and gradients), causal
by test, padding-invariant (left and right padding), an incremental ``step`` equal to the full pass position by
position and in pieces, and a clear error for the mixers without a causal form."""
from __future__ import annotations

import pytest
import torch

from fastformer.mixers import build_mixer
from fastformer.mixers.base import causal_mixers, prefix_softmax_pool
from fastformer.mixers.naive import (
    fastformer as naive_ff,
    linear_transformer as naive_lin,
    longformer as naive_lf,
    performer as naive_perf,
    pooling_baseline as naive_pool,
    transformer as naive_tf,
)

D, H = 32, 4
REFS = {"fastformer": naive_ff.reference, "linear_transformer": naive_lin.reference,
        "pooling_baseline": naive_pool.reference, "transformer": naive_tf.reference,
        "performer": naive_perf.reference, "longformer": naive_lf.reference}
# (name, options): every causal mixer, both Fastformer forms and its ablation options; performer's and longformer's
# second case runs the multi-chunk path (performer: several scan chunks; longformer: the chunked band, not the dense
# shortcut, and a step taken in several chunks)
CASES = [("transformer", {}), ("linear_transformer", {}), ("pooling_baseline", {}),
         ("performer", {}), ("performer", dict(n_features=16, chunk=4)),
         ("longformer", dict(n_global=0)), ("longformer", dict(n_global=0, window=2, chunk=2)),
         ("pooling_baseline", dict(gate="product", broadcast=False)),
         ("fastformer", {}), ("fastformer", dict(variant="official", sharing="qv")),
         ("fastformer", dict(sharing="none")), ("fastformer", dict(interaction="add")),
         ("fastformer", dict(interaction="concat", sharing="qv+head")), ("fastformer", dict(global_key_from="k")),
         ("fastformer", dict(key_branch=False)), ("fastformer", dict(pooling="mean")),
         ("fastformer", dict(output_transform=False, query_residual=False))]
IDS = [n + ("" if not o else "[" + ",".join(f"{k}={v}" for k, v in o.items()) + "]") for n, o in CASES]


def make(name: str, dtype=torch.float64, **kw):
    torch.manual_seed(0)
    m = build_mixer(name, d_model=D, n_heads=H, causal=True, **kw).to(dtype).eval()
    for p in m.parameters():  # larger weights than the init so that the pools are far from uniform
        torch.nn.init.normal_(p, 0.0, 0.3)
    return m


def batch(B=3, N=13, dtype=torch.float64, left=False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, N, D, generator=g, dtype=dtype)
    lengths = torch.tensor([N, N - 4, 5][:B])
    pos = torch.arange(N)[None, :]
    mask = pos >= (N - lengths)[:, None] if left else pos < lengths[:, None]
    return x, mask


def test_causal_mixers_listed_and_others_refuse():
    assert causal_mixers() == ["fastformer", "linear_transformer", "longformer", "performer", "pooling_baseline",
                               "transformer"]
    for name in ("bigbird", "linformer", "poolingformer"):  # no causal form (fastformer/mixers/base.py says why)
        with pytest.raises(ValueError, match=f"mixer '{name}' has no causal form; mixers with one: fastformer, "):
            build_mixer(name, d_model=D, n_heads=H, causal=True)
    m = build_mixer("linformer", d_model=D, n_heads=H, causal=False, max_len=16)  # the only form it has
    assert not m.causal
    with pytest.raises(NotImplementedError, match="build it with causal=True"):
        build_mixer("fastformer", d_model=D, n_heads=H).step(torch.zeros(1, 1, D))


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
@pytest.mark.parametrize("left", [False, True], ids=["right_pad", "left_pad"])
def test_matches_masked_reference_forward_and_backward(name, opts, left):
    m = make(name, **opts)
    x, mask = batch(left=left)
    x.requires_grad_(True)
    for mk in (mask, None):
        y, y_ref = m(x, mk), REFS[name](m, x, mk)
        sel = mk if mk is not None else torch.ones(x.shape[:2], dtype=torch.bool)
        torch.testing.assert_close(y[sel], y_ref[sel], rtol=1e-8, atol=1e-10)
        w = torch.randn_like(y)
        params = [p for p in m.parameters()]
        grads = torch.autograd.grad((y[sel] * w[sel]).sum(), [x, *params], allow_unused=True)
        grads_ref = torch.autograd.grad((y_ref[sel] * w[sel]).sum(), [x, *params], allow_unused=True)
        for g, gr in zip(grads, grads_ref):
            if g is None or gr is None:
                assert (g if gr is None else gr) is None or (g if gr is None else gr).abs().sum() == 0
                continue
            torch.testing.assert_close(g, gr, rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
def test_outputs_never_depend_on_later_tokens(name, opts):
    m = make(name, dtype=torch.float32, **opts)
    x, mask = batch(dtype=torch.float32)
    y = m(x, mask)
    for i in (0, 4, 11):
        x2 = x.clone()
        x2[:, i + 1:] = torch.randn_like(x2[:, i + 1:]) * 10
        y2 = m(x2, mask)
        torch.testing.assert_close(y2[:, :i + 1][mask[:, :i + 1]], y[:, :i + 1][mask[:, :i + 1]],
                                   rtol=1e-5, atol=1e-5)
    assert not torch.allclose(m(x2, mask)[:, -1], y[:, -1])  # sanity: the changed last position does change


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
@pytest.mark.parametrize("left", [False, True], ids=["right_pad", "left_pad"])
def test_padding_invariance(name, opts, left):
    m = make(name, dtype=torch.float32, **opts)
    x, mask = batch(dtype=torch.float32, left=left)
    x2 = x.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), D) * 100
    y1, y2 = m(x, mask), m(x2, mask)
    assert torch.isfinite(y1).all() and torch.isfinite(y2).all()
    torch.testing.assert_close(y1[mask], y2[mask], rtol=1e-5, atol=1e-5)
    # a left-padded row equals the same real tokens without padding
    row = 2
    real = x[row][mask[row]][None]
    torch.testing.assert_close(m(real, None)[0], y1[row][mask[row]], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
def test_step_equals_full_pass(name, opts):
    """The per-layer state: position by position, and in uneven pieces, equal to one forward pass."""
    m = make(name, **opts)
    x, _ = batch(N=11)
    full = m(x, None)
    state, ys = None, []
    for i in range(x.shape[1]):
        y, state = m.step(x[:, i:i + 1], state)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), full, rtol=1e-10, atol=1e-12)
    state, ys = None, []
    for a, b in ((0, 3), (3, 4), (4, 9), (9, 11)):
        y, state = m.step(x[:, a:b], state)
        ys.append(y)
    torch.testing.assert_close(torch.cat(ys, 1), full, rtol=1e-10, atol=1e-12)


def test_prefix_pool_chunks_and_large_scores():
    """The chunked scan with a running max: any chunk size gives the same result, huge score ranges stay finite and
    exact (no overflow), and it equals the explicit prefix softmax."""
    g = torch.Generator().manual_seed(0)
    B, N, h, d = 2, 37, 3, 5
    s = torch.randn(B, N, h, generator=g, dtype=torch.float64) * 300  # exp(300) overflows float32
    v = torch.randn(B, N, h, d, generator=g, dtype=torch.float64)
    ref = torch.stack([torch.einsum("bjh,bjhd->bhd", torch.softmax(s[:, :i + 1], 1), v[:, :i + 1])
                       for i in range(N)], 1)
    for chunk in (1, 4, 16, 64):
        out, _ = prefix_softmax_pool(s, v, chunk=chunk)
        torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-12)
    out32, _ = prefix_softmax_pool(s.float(), v.float(), chunk=8)
    assert torch.isfinite(out32).all()
    torch.testing.assert_close(out32.double(), ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,opts", [("fastformer", {}), ("performer", dict(chunk=4))],
                         ids=["fastformer", "performer"])
def test_bf16_autocast_finite(name, opts):
    m = make(name, dtype=torch.float32, **opts)
    x, mask = batch(dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x * 50, mask)
    assert torch.isfinite(y.float()).all()


def test_performer_causal_prefix_reference_and_redraws():
    """The key features are referenced to a running max over the prefix (what ``step`` can know), so earlier outputs
    do not change at all, not even by rounding, when later tokens in the same scan chunk change (a whole-sequence key
    shift moves them by ~1e-6 here); forward redraws as the bidirectional form does, step never does."""
    x, mask = batch(dtype=torch.float32)
    m = make("performer", dtype=torch.float32, n_features=16, chunk=8)
    x2 = x.clone()
    x2[:, 5:] = x2[:, 5:] * 100
    assert torch.equal(m(x, mask)[:, :5], m(x2, mask)[:, :5])
    m.train()
    m(x, mask)
    w0 = m.projection.clone()
    m(x, mask)
    assert not torch.equal(m.projection, w0)
    w1 = m.projection.clone()
    m.step(x[:, :3])
    assert torch.equal(m.projection, w1)


def test_longformer_causal_options():
    with pytest.raises(ValueError, match="no global tokens .*set n_global=0"):
        build_mixer("longformer", d_model=D, n_heads=H, causal=True)  # the bidirectional default n_global=8
    with pytest.raises(ValueError, match="needs impl='fast'"):
        build_mixer("longformer", d_model=D, n_heads=H, causal=True, n_global=0, impl="hf")
    m = make("longformer", n_global=0, window=4)  # 2 previous positions and itself
    x, _ = batch(B=1, N=8)
    _, state = m.step(x)
    assert state["k"].shape[1] == 2  # the rolling cache holds window // 2 positions


def test_encoder_builds_causal_layers_and_reports_eager():
    from fastformer.mixers import implementation_report
    from fastformer.models import Encoder

    enc = Encoder(d_model=D, n_heads=H, n_layers=2, mixer="fastformer", mixer_kwargs={"causal": True}, max_len=16)
    assert all(layer.mixer.causal for layer in enc.layers)
    rep = implementation_report(enc)
    assert rep["ran"] == ["eager"] and any("causal=True" in f for f in rep["fallbacks"])
    with pytest.raises(ValueError, match="no causal form"):
        Encoder(d_model=D, n_heads=H, mixer="bigbird", mixer_kwargs={"causal": True})
