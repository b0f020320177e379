"""Local-attention mixers: Longformer (fast impl == transformers' LongformerSelfAttention == dense reference, window
and global-token semantics) and Poolingformer (edge cases against the dense reference)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

import fastformer.mixers.longformer as lf_module
from fastformer.mixers import build_mixer, mixer_kwargs
from fastformer.mixers.naive.longformer import reference as lf_reference
from fastformer.mixers.naive.poolingformer import reference as pf_reference

D, H = 32, 4
CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "model" / "mixer"


@pytest.fixture(params=["chunked", "auto"])
def path(request, monkeypatch):
    """Run a test with the chunked band path forced, and with the automatic chunked/dense choice."""
    if request.param == "chunked":
        monkeypatch.setattr(lf_module, "DENSE_FACTOR", 0.0)
    return request.param


def batch(N: int, lengths: list[int], dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), N, D, generator=g, dtype=dtype)
    mask = torch.arange(N)[None, :] < torch.tensor(lengths)[:, None]  # (B, N)
    return x, mask


def lf_pair(**kw):
    torch.manual_seed(0)
    fast = build_mixer("longformer", d_model=D, n_heads=H, **kw)
    hf = build_mixer("longformer", d_model=D, n_heads=H, impl="hf", **kw)
    hf.load_state_dict(fast.state_dict(), strict=True)  # same parameter names and meaning
    return fast, hf


def grads(m, x, mask, w):
    x = x.clone().requires_grad_(True)
    y = m(x, mask)
    gs = torch.autograd.grad((y[mask] * w[mask]).sum(), [x, *m.parameters()])
    return y, gs


# N not multiples of the window, rows shorter than n_global, a length-1 row
@pytest.mark.parametrize("N,window,n_global,lengths", [
    (13, 4, 2, [13, 9, 1]),
    (37, 8, 3, [37, 20, 2]),
    (50, 6, 0, [50, 31]),
    (6, 8, 8, [6, 4]),
    (70, 16, 5, [70, 66, 3]),
    (150, 4, 2, [150, 100, 40]),
])
def test_longformer_fast_equals_hf(N, window, n_global, lengths, path):
    fast, hf = lf_pair(window=window, n_global=n_global)
    x, mask = batch(N, lengths)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    y_f, g_f = grads(fast, x, mask, w)
    y_h, g_h = grads(hf, x, mask, w)
    torch.testing.assert_close(y_f[mask], y_h[mask], rtol=1e-5, atol=1e-5)
    for a, b in zip(g_f, g_h):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("impl", ["fast", "hf"])
def test_longformer_matches_dense_reference_float64(impl, path):
    fast, hf = lf_pair(window=6, n_global=3)
    m = (fast if impl == "fast" else hf).double()
    x, mask = batch(29, [29, 17, 2], dtype=torch.float64)
    # the HF module computes its softmax in float32 even for float64 inputs
    tol = dict(rtol=1e-10, atol=1e-12) if impl == "fast" else dict(rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(m(x, mask)[mask], lf_reference(m, x, mask)[mask], **tol)


def test_longformer_state_dicts_interchange():
    fast, hf = lf_pair(window=4, n_global=2)
    assert list(fast.state_dict()) == list(hf.state_dict())
    assert {"query_global.weight", "key_global.weight", "value_global.weight"} <= set(fast.state_dict())
    assert "query_global.weight" not in build_mixer("longformer", d_model=D, n_heads=H, window=4,
                                                    n_global=0).state_dict()


def _dependence(m, x, mask, j):
    """Which output rows change when input row j is perturbed -> (B, N) bool."""
    x2 = x.clone()
    x2[:, j] += 3.0 * torch.randn(x.shape[0], D)
    return (m(x2, mask) - m(x, mask)).abs().amax(-1) > 1e-6


@pytest.mark.parametrize("impl", ["fast", "hf"])
def test_longformer_window_is_total_span(impl, path):
    """window=6: token i depends on input j exactly when |i - j| <= 3 (no global tokens)."""
    m = build_mixer("longformer", d_model=D, n_heads=H, window=6, n_global=0, impl=impl).eval()
    x, mask = batch(30, [30])
    for j in (0, 11, 29):
        dep = _dependence(m, x, mask, j)[0]
        expected = (torch.arange(30) - j).abs() <= 3
        assert torch.equal(dep, expected), (j, dep.nonzero().flatten().tolist())


@pytest.mark.parametrize("impl", ["fast", "hf"])
def test_longformer_global_tokens(impl, path):
    m = build_mixer("longformer", d_model=D, n_heads=H, window=4, n_global=2, impl=impl).eval()
    N = 40
    x, mask = batch(N, [N, 25])
    # a far, ordinary token: seen by its window and by the global rows 0, 1 (of its own sequence only)
    dep = _dependence(m, x, mask, 20)
    expected = ((torch.arange(N) - 20).abs() <= 2) | (torch.arange(N) < 2)
    assert torch.equal(dep[0], expected)
    # a global token: every real row depends on it
    dep = _dependence(m, x, mask, 1)
    assert dep[0].all() and dep[1][mask[1]].all()
    # padding never feeds real rows, global ones included
    dep = _dependence(m, x, mask, 30)
    assert not dep[1][mask[1]].any()


def test_longformer_chunk_size_does_not_change_results(path):
    x, mask = batch(45, [45, 30, 5])
    outs = []
    for chunk in (1, 3, 16, 64):
        torch.manual_seed(0)
        m = build_mixer("longformer", d_model=D, n_heads=H, window=8, n_global=3, chunk=chunk)
        outs.append(m(x, mask)[mask])
    for o in outs[1:]:
        torch.testing.assert_close(o, outs[0], rtol=1e-5, atol=1e-6)


def test_longformer_dropout_trains_and_bad_options_raise():
    m = build_mixer("longformer", d_model=D, n_heads=H, window=4, n_global=2, dropout=0.5).train()
    x, mask = batch(20, [20, 3])
    assert torch.isfinite(m(x, mask)).all()
    with pytest.raises(ValueError, match="window=5"):
        build_mixer("longformer", d_model=D, n_heads=H, window=5)
    with pytest.raises(ValueError, match="impl='flash'"):
        build_mixer("longformer", d_model=D, n_heads=H, impl="flash")


# Poolingformer: N smaller than both windows, N not a multiple of pool_size, empty buckets, max pooling, length-1 rows
@pytest.mark.parametrize("N,kw,lengths", [
    (5, dict(window=8, pool_window=16, pool_size=4), [5, 1]),
    (23, dict(window=8, pool_window=16, pool_size=4), [23, 9, 2]),
    (31, dict(window=4, pool_window=12, pool_size=3, pool="max"), [31, 13, 1]),
    (26, dict(window=2, pool_window=6, pool_size=5), [26, 11]),
    (18, dict(window=6, pool_window=8, pool_size=2, chunk=4), [18, 7]),
    (90, dict(window=4, pool_window=8, pool_size=2), [90, 41]),
])
def test_poolingformer_matches_reference_edge_cases(N, kw, lengths, path):
    torch.manual_seed(0)
    m = build_mixer("poolingformer", d_model=D, n_heads=H, **kw).double()
    x, mask = batch(N, lengths, dtype=torch.float64)
    w = torch.randn(x.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    y, g = grads(m, x, mask, w)
    xr = x.clone().requires_grad_(True)
    y_ref = pf_reference(m, xr, mask)
    g_ref = torch.autograd.grad((y_ref[mask] * w[mask]).sum(), [xr, *m.parameters()])
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y[mask], y_ref[mask], rtol=1e-9, atol=1e-11)
    for a, b in zip(g, g_ref):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)


def test_poolingformer_padding_and_receptive_field(path):
    m = build_mixer("poolingformer", d_model=D, n_heads=H, window=4, pool_window=8, pool_size=2, pool="max").eval()
    N = 40
    x, mask = batch(N, [N, 13])
    dep = _dependence(m, x, mask, 30)  # padded in row 1: no real row of row 1 may change
    assert not dep[1][mask[1]].any()
    # row 0: token 20 reaches i through level 1 (|i-20| <= 2), then level 2 pools level-1 outputs of the bucket
    # neighbourhood: nothing beyond 2 + 8/2 + bucket size away can change
    dep = _dependence(m, x, mask, 20)[0]
    assert dep[18:23].all() and not dep[:12].any() and not dep[29:].any()


@pytest.mark.parametrize("name", ["longformer", "poolingformer"])
def test_config_defaults_build(name):
    cfg = yaml.safe_load((CONFIGS / f"{name}.yaml").read_text())
    assert cfg.pop("name") == name
    assert set(cfg) <= set(mixer_kwargs(name)), sorted(set(cfg) - set(mixer_kwargs(name)))
    m = build_mixer(name, d_model=256, n_heads=16, **cfg)
    x, mask = torch.randn(1, 100, 256), torch.arange(100)[None] < 77
    assert torch.isfinite(m(x, mask)).all()
