"""Every registered mixer: shape, padding-mask invariance, gradients to every parameter, and equality (forward and
gradients, float64) with its slow reference in ``fastformer.mixers.naive.<name>``."""
from __future__ import annotations

import importlib

import pytest
import torch

from fastformer.mixers import MIXERS, build_mixer

D, H = 32, 4
# small-scale options so that local/sparse patterns are exercised at N=24
SMALL = {
    "longformer": dict(window=4, n_global=2),
    "bigbird": dict(block_size=4, n_global_blocks=1, n_random_blocks=1, window_blocks=3),
    "linformer": dict(proj_len=8, max_len=64),
    "poolingformer": dict(window=8, pool_window=16, pool_size=4),
    "performer": dict(n_features=32),
}
NAMES = sorted(MIXERS)


def make(name: str, **kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_mixer(name, d_model=D, n_heads=H, **{**SMALL.get(name, {}), **kw})


def padded_batch(B=3, N=24, dtype=torch.float32):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, N, D, generator=g, dtype=dtype)
    lengths = torch.tensor([N, N - 5, 7][:B])
    mask = torch.arange(N)[None, :] < lengths[:, None]  # (B, N)
    return x, mask


@pytest.mark.parametrize("name", NAMES)
def test_shape_and_finite(name):
    m = make(name).eval()
    x, mask = padded_batch()
    for mk in (mask, None):
        y = m(x, mk)
        assert y.shape == x.shape and torch.isfinite(y).all()


@pytest.mark.parametrize("name", NAMES)
def test_padding_invariance(name):
    """Outputs at real positions must not depend on what sits in padded positions."""
    m = make(name).eval()
    x, mask = padded_batch()
    x2 = x.clone()
    x2[~mask] = torch.randn(int((~mask).sum()), D) * 100
    y1, y2 = m(x, mask), m(x2, mask)
    torch.testing.assert_close(y1[mask], y2[mask], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_reach_every_parameter(name):
    m = make(name).train()
    x, mask = padded_batch()
    m(x, mask).square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.requires_grad and (p.grad is None or p.grad.abs().sum() == 0)]
    assert not missing, f"{name}: no gradient for {missing}"


@pytest.mark.parametrize("name", NAMES)
def test_matches_reference_forward_and_backward(name):
    try:
        ref = importlib.import_module(f"fastformer.mixers.naive.{name}").reference
    except ModuleNotFoundError:
        pytest.fail(f"mixer {name!r} has no reference in fastformer/mixers/naive/{name}.py")
    m = make(name).double().eval()
    x, mask = padded_batch(dtype=torch.float64)
    x.requires_grad_(True)
    for mk in (mask, None):
        y = m(x, mk)
        y_ref = ref(m, x, mk)
        sel = mk if mk is not None else torch.ones(x.shape[:2], dtype=torch.bool)
        torch.testing.assert_close(y[sel], y_ref[sel], rtol=1e-7, atol=1e-9)
        w = torch.randn_like(y)
        grads = torch.autograd.grad((y[sel] * w[sel]).sum(), [x, *m.parameters()], allow_unused=True)
        grads_ref = torch.autograd.grad((y_ref[sel] * w[sel]).sum(), [x, *m.parameters()], allow_unused=True)
        for g, gr in zip(grads, grads_ref):
            if g is None or gr is None:
                assert g is None and gr is None or (g if gr is None else gr).abs().sum() == 0
                continue
            torch.testing.assert_close(g, gr, rtol=1e-6, atol=1e-8)


def test_unknown_name_and_option_list_valid_ones():
    with pytest.raises(KeyError, match="registered mixers: .*fastformer"):
        build_mixer("nope", d_model=D, n_heads=H)
    with pytest.raises(TypeError, match="valid options"):
        build_mixer("fastformer", d_model=D, n_heads=H, windw=3)
