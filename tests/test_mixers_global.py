"""Mixer-specific properties of bigbird, linformer, linear_transformer and performer (the generic contract --
shapes, padding invariance, gradients, equality with the naive references -- is in tests/test_mixers.py)."""
from __future__ import annotations

import itertools
import math

import pytest
import torch

from fastformer.mixers import build_mixer
from fastformer.mixers.bigbird import sample_distinct
from fastformer.mixers.naive import bigbird as ref_bigbird, linformer as ref_linformer, performer as ref_performer
from fastformer.mixers.performer import favor_features, orthogonal_gaussian

D, H = 32, 4


def batch(B=3, N=24, lengths=(24, 19, 7), dtype=torch.float32, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, D, generator=g, dtype=dtype)
    mask = torch.arange(N)[None, :] < torch.tensor(lengths)[:, None]  # (B, N)
    return x, mask


def mixer(name, **kw):
    torch.manual_seed(0)
    return build_mixer(name, d_model=D, n_heads=H, **kw)


# ---------------------------------------------------------------- bigbird
BB = dict(block_size=4, window_blocks=3, n_global_blocks=2, n_random_blocks=2)


def test_bigbird_pattern_contents():
    m = mixer("bigbird", **BB)
    nb, g, w, r = 12, 2, 1, 2
    allowed = ref_bigbird.dense_block_mask(m, nb)  # (h, nb, nb)
    rnd = m.random_blocks(nb)  # (h, nb - g, r)
    assert rnd.shape == (H, nb - g, r)
    assert allowed[:, :g, :].all() and allowed[:, :, :g].all()  # global rows and columns
    for hd, i in itertools.product(range(H), range(g, nb)):
        chosen = rnd[hd, i - g].tolist()
        assert len(set(chosen)) == r and all(c >= g and abs(c - i) > w and c < nb for c in chosen)
        window = {j for j in range(i - w, i + w + 1) if g <= j < nb}
        assert set(allowed[hd, i].nonzero().flatten().tolist()) == set(range(g)) | window | set(chosen)
    assert len({tuple(rnd[hd].flatten().tolist()) for hd in range(H)}) > 1  # heads draw their own blocks


def test_bigbird_random_pattern_is_fixed_and_saved_with_the_module():
    m = mixer("bigbird", **BB)
    assert torch.equal(m.random_blocks(16), m.random_blocks(16))
    torch.manual_seed(123)
    other = build_mixer("bigbird", d_model=D, n_heads=H, **BB)
    assert not torch.equal(other.random_blocks(64), m.random_blocks(64))
    other.load_state_dict(m.state_dict())  # the seed buffer travels with the state dict
    assert torch.equal(other.random_blocks(64), m.random_blocks(64))
    x, mask = batch(N=40, lengths=(40, 33, 9))
    m.train()  # the pattern does not change between calls, in training either (dropout is 0)
    assert torch.equal(m(x, mask), m(x, mask))


def test_bigbird_few_candidates_uses_all_of_them():
    m = mixer("bigbird", block_size=4, window_blocks=3, n_global_blocks=1, n_random_blocks=3)
    rnd = m.random_blocks(4)  # query blocks 1..3; candidates outside window and global: {3}, {}, {1}
    for hd in range(H):
        assert sorted(rnd[hd, 0].tolist()) == [-1, -1, 3]
        assert rnd[hd, 1].tolist() == [-1, -1, -1]
        assert sorted(rnd[hd, 2].tolist()) == [-1, -1, 1]


def test_sample_distinct_is_uniform_over_subsets():
    gen = torch.Generator().manual_seed(0)
    out = sample_distinct(torch.full((20000,), 5), 2, gen)  # (R, 2) subsets of {0..4}
    assert ((out >= 0) & (out < 5)).all() and (out[:, 0] != out[:, 1]).all()
    counts = torch.bincount(out.sort(1).values @ torch.tensor([5, 1]), minlength=25).float()
    counts = counts[counts > 0]
    assert counts.numel() == 10 and (counts / 20000 - 0.1).abs().max() < 0.01


@pytest.mark.parametrize("opts,N", [(dict(BB), 50), (dict(BB, window_blocks=5, block_size=3), 31),
                                    (dict(BB, n_global_blocks=0, n_random_blocks=0), 17)])
def test_bigbird_matches_dense_reference_other_options(opts, N):
    m = mixer("bigbird", **opts).double()
    x, mask = batch(N=N, lengths=(N, N - 6, 5), dtype=torch.float64)
    torch.testing.assert_close(m(x, mask)[mask], ref_bigbird.reference(m, x, mask)[mask], rtol=1e-7, atol=1e-9)


def test_bigbird_all_padding_blocks_do_not_nan():
    # no global / random blocks: padded query blocks far from the real tokens see only padding
    m = mixer("bigbird", block_size=4, window_blocks=3, n_global_blocks=0, n_random_blocks=0)
    x, mask = batch(N=32, lengths=(32, 5, 0))  # last row: nothing real at all
    x.requires_grad_(True)
    y = m(x, mask)
    assert torch.isfinite(y).all()
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all() and all(torch.isfinite(p.grad).all() for p in m.parameters())
    # rows with no allowed key give a zero attention output, so y = out.bias there
    torch.testing.assert_close(y[1, 12:], m.out.bias.expand(20, D))
    # global variant: every query sees block 0, all-padding sequence still finite
    m2 = mixer("bigbird", **BB)
    assert torch.isfinite(m2(x.detach(), mask)).all()


# ---------------------------------------------------------------- linformer
def test_linformer_slices_projection_to_sequence_length():
    m = mixer("linformer", proj_len=8, max_len=64, share_kv=False).double()
    small = mixer("linformer", proj_len=8, max_len=20, share_kv=False).double()
    with torch.no_grad():
        small.qkv.load_state_dict(m.qkv.state_dict())
        small.out.load_state_dict(m.out.state_dict())
        small.E.copy_(m.E[:, :, :20])
        small.F.copy_(m.F[:, :, :20])
    x, mask = batch(N=20, lengths=(20, 15, 7), dtype=torch.float64)
    torch.testing.assert_close(m(x, mask), small(x, mask), rtol=1e-10, atol=1e-12)
    m(x, mask).sum().backward()
    assert m.E.grad[:, :, 20:].abs().sum() == 0 and m.E.grad[:, :, :7].abs().sum() > 0


def test_linformer_length_errors():
    m = mixer("linformer", proj_len=8, max_len=16)
    with pytest.raises(ValueError, match="max_len=16"):
        m(torch.randn(1, 17, D))
    with pytest.raises(ValueError, match="max_len"):
        mixer("linformer", proj_len=8)


@pytest.mark.parametrize("share_kv,share_heads", [(True, True), (False, True), (True, False), (False, False)])
def test_linformer_sharing_variants(share_kv, share_heads):
    m = mixer("linformer", proj_len=8, max_len=32, share_kv=share_kv, share_heads=share_heads).double()
    assert m.E.shape == (1 if share_heads else H, 8, 32) and (m.F is None) == share_kv
    x, mask = batch(dtype=torch.float64)
    torch.testing.assert_close(m(x, mask)[mask], ref_linformer.reference(m, x, mask)[mask], rtol=1e-7, atol=1e-9)


# ---------------------------------------------------------------- linear transformer
def test_linear_attention_equals_quadratic_form():
    """Recompute sum_j sim(q_i, k_j) v_j / sum_j sim(q_i, k_j) token by token for one head."""
    m = mixer("linear_transformer").double()
    x, mask = batch(dtype=torch.float64)
    captured = {}
    m.out.register_forward_hook(lambda mod, inp, out: captured.update(u=inp[0]))
    m(x, mask)
    q, k, v = m.qkv(x).split(D, -1)
    phi = lambda t: torch.nn.functional.elu(t) + 1  # noqa: E731
    dh, b, hd = D // H, 1, 2
    sl = slice(hd * dh, (hd + 1) * dh)
    for i in range(int(mask[b].sum())):
        sims = [phi(q[b, i, sl]) @ phi(k[b, j, sl]) for j in range(24) if mask[b, j]]
        num = sum(s * v[b, j, sl] for s, j in zip(sims, range(24)))
        torch.testing.assert_close(captured["u"][b, i, sl], num / (sum(sims) + m.eps))


def test_linear_attention_bf16_autocast_accumulates_in_fp32():
    m = mixer("linear_transformer")
    x = torch.randn(2, 4096, D) * 3
    ref = m(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(x)
    assert y.dtype == torch.bfloat16 and torch.isfinite(y).all()
    assert (y.float() - ref).abs().max() < 0.05 * ref.abs().max()


# ---------------------------------------------------------------- performer
def softmax_attention(q, k, v):  # (B, h, N, dh) each -> (B, h, N, dh)
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), -1) @ v


def favor_attention(q, k, v, w):  # (B, h, N, dh) each, w: (m, dh) -> (B, h, N, dh)
    dh = q.shape[-1]
    fq, fk = favor_features(q * dh ** -0.25, w, is_query=True), favor_features(k * dh ** -0.25, w, is_query=False)
    return (fq @ (fk.transpose(-1, -2) @ v)) / (fq @ fk.sum(2)[..., None])


def test_performer_approximates_softmax_attention():
    """FAVOR+ error vs exact softmax attention shrinks as features grow, down to well below the part of the output
    that differs from uniform attention (moderate logits: FAVOR+'s variance grows like exp(|q'+k'|^2))."""
    g = torch.Generator().manual_seed(0)
    q, k = (torch.randn(2, 2, 64, 16, generator=g, dtype=torch.float64) * 0.5 for _ in range(2))
    v = torch.randn(2, 2, 64, 16, generator=g, dtype=torch.float64)
    exact = softmax_attention(q, k, v)
    rms = lambda t: t.square().mean().sqrt()  # noqa: E731
    err = {}
    for m in (16, 64, 256, 1024, 4096):
        errs = [rms(favor_attention(q, k, v, orthogonal_gaussian(m, 16, torch.Generator().manual_seed(s))) - exact)
                for s in range(8)]
        err[m] = float(torch.stack(errs).mean())
    uniform = float(rms(v.mean(2, keepdim=True) - exact))  # error of ignoring q, k entirely
    assert err[16] > err[64] > err[256] > err[1024] > err[4096], err
    assert err[4096] < 0.2 * err[16] and err[4096] < 0.35 * uniform, (err, uniform)


def test_orthogonal_random_features_structure():
    w = orthogonal_gaussian(40, 16, torch.Generator().manual_seed(0))  # blocks of 16, 16, 8 rows
    for blk in (w[:16], w[16:32], w[32:]):
        gram = blk @ blk.T
        off = gram - torch.diag(torch.diagonal(gram))
        assert off.abs().max() < 1e-8  # rows within a block are orthogonal
    assert 2.5 < w.norm(dim=1).mean() < 5.5  # chi(16) norms, mean ~ 3.94


def test_performer_redraws_only_in_training():
    m = mixer("performer", n_features=32, redraw_every=2)
    x, mask = batch()
    w0 = m.projection.clone()
    m.eval()
    for _ in range(5):
        m(x, mask)
    assert torch.equal(m.projection, w0)
    m.train()
    m(x, mask)
    m(x, mask)
    assert torch.equal(m.projection, w0)  # calls 1, 2 use the first draw
    m(x, mask)
    w1 = m.projection.clone()
    assert not torch.equal(w1, w0)  # call 3 redraws
    twin = mixer("performer", n_features=32, redraw_every=2).train()  # same seed -> same draws
    for _ in range(3):
        twin(x, mask)
    assert torch.equal(twin.projection, w1)
    fixed = mixer("performer", n_features=32, redraw_every=0).train()
    w_fixed = fixed.projection.clone()
    for _ in range(3):
        fixed(x, mask)
    assert torch.equal(fixed.projection, w_fixed)
    assert "projection" in dict(m.named_buffers()) and "projection" not in dict(m.named_parameters())


def test_performer_stable_for_large_inputs_and_bf16():
    m64 = mixer("performer", n_features=32, redraw_every=0).double()
    x64, mask = batch(dtype=torch.float64)
    x64 = x64 * 10  # logits far outside float32's exp range
    exact = ref_performer.reference(m64, x64, mask)  # unshifted FAVOR+ still fits float64 here
    m32 = mixer("performer", n_features=32, redraw_every=0)  # same seed -> same weights and projection
    assert not torch.isfinite(ref_performer.reference(m32, x64.float(), mask)[mask]).all()  # unshifted fp32 breaks
    y32 = m32(x64.float(), mask)
    assert torch.isfinite(y32).all()
    torch.testing.assert_close(y32.double()[mask], exact[mask], rtol=1e-4, atol=1e-4)
    assert torch.isfinite(m64(x64 * 3, mask)).all()
    mf = mixer("performer", n_features=32, redraw_every=0)
    xf, maskf = batch()
    ref = mf(xf, maskf)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        yb = mf(xf, maskf)
    assert torch.isfinite(yb).all() and (yb.float() - ref)[maskf].abs().max() < 0.05 * ref.abs().max()
    empty = torch.zeros(1, 24, dtype=torch.bool)
    assert torch.isfinite(mf(xf[:1], empty)).all()
