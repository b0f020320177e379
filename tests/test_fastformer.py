"""Fastformer specifics: the released layer loads strict and matches its transcription; every ablation option matches
the token-by-token reference; layer-wise sharing really shares; the structural rank-1 property of the official form."""
from __future__ import annotations

import itertools

import pytest
import torch

from fastformer.mixers import build_mixer
from fastformer.mixers.naive.fastformer import OfficialFastSelfAttention, reference
from fastformer.models import Encoder

D, H = 32, 4


def batch(B=2, N=9, dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(B, N, D, generator=g, dtype=dtype)
    mask = torch.ones(B, N, dtype=torch.bool)
    mask[-1, 6:] = False
    return x, mask


def test_official_state_dict_loads_strict_and_matches():
    torch.manual_seed(3)
    off = OfficialFastSelfAttention(D, H).double()
    for p in off.parameters():  # non-trivial biases too
        torch.nn.init.normal_(p, 0, 0.3)
    ours = build_mixer("fastformer", d_model=D, n_heads=H, variant="official", sharing="qv").double()
    ours.load_state_dict(off.state_dict(), strict=True)
    assert sorted(dict(ours.named_children())) == ["dropout", "key", "key_att", "query", "query_att", "transform"]
    x, mask = batch()
    torch.testing.assert_close(ours(x, mask)[mask], off(x, mask.double())[mask], rtol=1e-10, atol=1e-10)


OPTIONS = [dict(sharing=s) for s in ("none", "qv", "qv+head", "qv+layer")] + \
    [dict(interaction=i) for i in ("add", "concat")] + \
    [dict(output_transform=False), dict(global_key_from="k"), dict(key_branch=False), dict(pooling="mean"),
     dict(query_residual=False), dict(interaction="concat", sharing="qv+head", pooling="mean")]


@pytest.mark.parametrize("opts", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
def test_options_match_reference(opts):
    torch.manual_seed(0)
    m = build_mixer("fastformer", d_model=D, n_heads=H, **opts).double()
    x, mask = batch()
    torch.testing.assert_close(m(x, mask)[mask], reference(m, x, mask)[mask], rtol=1e-9, atol=1e-10)


def test_head_sharing_and_parameter_counts():
    full = build_mixer("fastformer", d_model=D, n_heads=H, sharing="qv")
    head = build_mixer("fastformer", d_model=D, n_heads=H, sharing="qv+head")
    none = build_mixer("fastformer", d_model=D, n_heads=H, sharing="none")
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    dh = D // H
    assert n(none) - n(full) == D * D + D  # the value projection
    assert n(full) - n(head) == (H - 1) * (2 * dh + dh * dh + dh)  # w_q, w_k, per-head transform


def test_layer_sharing_hands_one_mixer_to_every_layer():
    enc = Encoder(d_model=D, n_heads=H, n_layers=3, mixer="fastformer", mixer_kwargs={"sharing": "qv+layer"})
    assert enc.layers[0].mixer is enc.layers[1].mixer is enc.layers[2].mixer
    enc2 = Encoder(d_model=D, n_heads=H, n_layers=3, mixer="fastformer", mixer_kwargs={"sharing": "qv"})
    assert len({id(layer.mixer) for layer in enc2.layers}) == 3


def test_official_rejects_ablation_options():
    with pytest.raises(ValueError, match="variant='official'"):
        build_mixer("fastformer", d_model=D, n_heads=H, variant="official", interaction="add")


def test_bf16_autocast_is_finite_with_large_scores():
    m = build_mixer("fastformer", d_model=D, n_heads=H)
    x = torch.randn(2, 64, D) * 1e3  # huge scores: the max-subtracted softmax must not overflow
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("variant", ["official", "paper"])
def test_output_depends_on_context_only_through_global_vectors(variant):
    """Structural claim (review / PAPER.md §5): with q = v, output i is a function of x_i and the pooled global
    vectors only. Permuting the *other* tokens leaves the pooled vectors, hence output i, unchanged."""
    torch.manual_seed(0)
    kw = dict(variant=variant, sharing="qv")
    m = build_mixer("fastformer", d_model=D, n_heads=H, **kw).double()
    x, _ = batch(B=1, N=10)
    for perm in itertools.islice(itertools.permutations(range(1, 10)), 0, 200, 37):
        x2 = x.clone()
        x2[0, 1:] = x[0, list(perm)]
        torch.testing.assert_close(m(x2)[0, 0], m(x)[0, 0], rtol=1e-10, atol=1e-12)
