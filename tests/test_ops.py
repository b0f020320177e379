"""fastformer/ops.py: the fast CPU dropout drops at rate p (unbiased in expectation), is seeded, passes gradients
through the kept elements only, and is nn.Dropout itself in eval mode or with trainer.cpu_dropout=torch."""
from __future__ import annotations

import pytest
import torch

from fastformer.ops import Dropout, cpu_dropout, fast_dropout, set_cpu_dropout


@pytest.fixture(autouse=True)
def _restore():
    before = cpu_dropout()
    yield
    set_cpu_dropout(before)


@pytest.mark.parametrize("p", [0.1, 0.2, 0.5])
def test_rate_and_scale(p):
    torch.manual_seed(0)
    y = fast_dropout(torch.ones(2_000_000), p)
    dropped = (y == 0).float().mean().item()
    assert abs(dropped - p) < 3e-3
    assert y.mean().item() == pytest.approx(1.0, abs=5e-3)  # kept elements rescaled: unbiased
    assert set(torch.unique(y).tolist()) <= {0.0, y.max().item()}


def test_seeded_and_gradient_through_kept_elements():
    x = torch.randn(64, 33, requires_grad=True)
    torch.manual_seed(3)
    a = fast_dropout(x, 0.3)
    torch.manual_seed(3)
    b = fast_dropout(x, 0.3)
    assert torch.equal(a, b)
    a.sum().backward()
    keep = a.detach() != 0
    assert torch.allclose(x.grad[keep], torch.full_like(x.grad[keep], 1 / (1 - round(0.3 * 32768) / 32768)))
    assert torch.all(x.grad[~keep] == 0)


def test_module_switch_and_eval_mode():
    d = Dropout(0.2)
    x = torch.randn(1000)
    set_cpu_dropout("fast")
    torch.manual_seed(1)
    fast = d(x)
    torch.manual_seed(1)
    assert torch.equal(fast, fast_dropout(x, 0.2))
    set_cpu_dropout("torch")
    torch.manual_seed(1)
    ours = d(x)
    torch.manual_seed(1)
    assert torch.equal(ours, torch.nn.functional.dropout(x, 0.2, training=True))
    d.eval()
    set_cpu_dropout("fast")
    assert torch.equal(d(x), x)
    with pytest.raises(ValueError, match="cpu_dropout"):
        set_cpu_dropout("bernoulli")


def test_compiles_without_graph_break():
    """Under torch.compile the fast path (an in-place random_ that dynamo cannot trace) gives way to nn.Dropout, so a
    whole model compiles as one graph (scripts/bench_train_step.py's compile row); the Fastformer mixer's impl=auto
    dispatch traces too. fullgraph=True raises on any graph break; the eager backend traces without generating code."""
    from fastformer.mixers.fastformer import Fastformer

    set_cpu_dropout("fast")
    d = Dropout(0.2)
    y = torch.compile(d, fullgraph=True, backend="eager")(torch.ones(4000))
    assert 0.1 < (y == 0).float().mean().item() < 0.3
    m = Fastformer(d_model=32, n_heads=4, impl="auto")
    x, mask = torch.randn(2, 7, 32), torch.ones(2, 7, dtype=torch.bool)
    compiled = torch.compile(m, fullgraph=True, backend="eager")
    assert torch.allclose(compiled(x, mask), m(x, mask), atol=1e-6)
    assert compiled(x, mask).shape == x.shape and m.impl_report()["ran"] == ["eager"]


def test_mask_is_the_documented_draw():
    """The mask is exactly the module docstring's rule over torch's generator (one int64 draw per four elements, keep
    when the low 15 bits of each 16 are >= round(p * 32768)), so a run trained before the mask's float conversion went
    through a byte view draws the same masks: the committed runs stay reproducible."""
    x = torch.randn(3, 257, 5)  # an element count that is not a multiple of 4
    torch.manual_seed(7)
    y = fast_dropout(x, 0.2)
    torch.manual_seed(7)
    n, thr = x.numel(), round(0.2 * 32768)
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_().view(torch.int16)[:n].view(x.shape)
    keep = (bits & 0x7FFF) >= thr
    assert torch.equal(y, x * torch.where(keep, 32768 / (32768 - thr), 0.0))
