"""Reference for ``fastformer``: paper Eq. 3-6 written token by token and head by head (and the official layer).

Causal form (``m.causal``): the same loops with every pool restricted to the real tokens j <= i and token j's
key meeting q*_j (fastformer/mixers/fastformer.py); the official layer as dense N x N lower-triangular masked
softmax matrices -- both O(N^2), independent of the chunked prefix scan."""
from __future__ import annotations

import math

import torch


def _softmax_pool(scores: list[torch.Tensor], vecs: list[torch.Tensor], real: list[bool]) -> torch.Tensor:
    """softmax over the real tokens of scalar scores, then weighted sum of vectors."""
    idx = [i for i, r in enumerate(real) if r]
    s = torch.stack([scores[i] for i in idx])
    w = torch.exp(s - s.max())
    w = w / w.sum()
    return sum(w[j] * vecs[i] for j, i in enumerate(idx))


def _head_linear(lin, x: torch.Tensor, head: int) -> torch.Tensor:
    j = 0 if lin.weight.shape[0] == 1 else head
    return x @ lin.weight[j] + lin.bias[j]


def reference(m, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    B, N, D = x.shape
    h, dh = m.n_heads, m.d_head
    real_all = torch.ones(B, N, dtype=torch.bool) if mask is None else mask.cpu()
    if m.causal:
        return _official_causal(m, x, real_all) if m.variant == "official" else _paper_causal(m, x, real_all)
    if m.variant == "official":
        return _official(m, x, real_all)
    out = torch.zeros_like(x)
    for b in range(B):
        real = real_all[b].tolist()
        q = m.query(x[b])  # (N, D)
        k = m.key(x[b]) if m.key_branch else None
        v = q if m.value is None else m.value(x[b])
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)
            qs = [q[i, sl] for i in range(N)]

            def pool(vecs, w, weights_from=None, real=real, hd=hd):  # (bound: called within this iteration)
                src = weights_from or vecs
                if m.pooling == "mean":
                    idx = [i for i in range(N) if real[i]]
                    return sum(vecs[i] for i in idx) / len(idx)
                wv = w[0 if w.shape[0] == 1 else hd]
                return _softmax_pool([wv @ s / math.sqrt(dh) for s in src], vecs, real)

            def interact(g, t, mix, hd=hd):
                if m.interaction == "product":
                    return g * t
                if m.interaction == "add":
                    return g + t
                return _head_linear(mix, torch.cat([g, t]), hd)

            q_glob = pool(qs, getattr(m, "w_q", None))
            if m.key_branch:
                ks = [k[i, sl] for i in range(N)]
                ps = [interact(q_glob, ks[i], getattr(m, "mix_qk", None)) for i in range(N)]
                if m.global_key_from == "p":
                    g = pool(ps, getattr(m, "w_k", None))
                else:
                    g = pool(ks, getattr(m, "w_k", None), weights_from=ps)
            else:
                g = q_glob
            for i in range(N):
                u = interact(g, v[i, sl], getattr(m, "mix_kv", None))
                r = _head_linear(m.transform, u, hd) if m.transform is not None else u
                out[b, i, sl] = r + (qs[i] if m.query_residual else 0)
    return out


class OfficialFastSelfAttention(torch.nn.Module):
    """Transcription of the released ``FastSelfAttention.forward`` (wuch15/Fastformer, PyTorch notebook), as described
    in PAPER.md §4.3: additive -10000 mask, ``repeat`` of the pooled query, value = query, ``transform(u) + q``."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.h, self.dh = n_heads, d_model // n_heads
        self.query = torch.nn.Linear(d_model, d_model)
        self.query_att = torch.nn.Linear(d_model, n_heads)
        self.key = torch.nn.Linear(d_model, d_model)
        self.key_att = torch.nn.Linear(d_model, n_heads)
        self.transform = torch.nn.Linear(d_model, d_model)

    def _heads(self, x):  # (B, N, D) -> (B, h, N, dh)
        return x.view(x.shape[0], x.shape[1], self.h, self.dh).permute(0, 2, 1, 3)

    def forward(self, hidden_states, attention_mask):  # attention_mask: (B, N) float 1 = real
        B, N, D = hidden_states.shape
        add_mask = ((1.0 - attention_mask) * -10000.0).unsqueeze(1)  # (B, 1, N)
        mixed_query = self.query(hidden_states)
        mixed_key = self.key(hidden_states)
        query_for_score = self.query_att(mixed_query).transpose(1, 2) / self.dh ** 0.5 + add_mask  # (B, h, N)
        query_weight = torch.softmax(query_for_score, -1).unsqueeze(2)  # (B, h, 1, N)
        query_layer = self._heads(mixed_query)
        pooled_query = torch.matmul(query_weight, query_layer).transpose(1, 2).reshape(B, 1, D)
        mixed_query_key = mixed_key * pooled_query.repeat(1, N, 1)
        qk_score = (self.key_att(mixed_query_key) / self.dh ** 0.5).transpose(1, 2) + add_mask
        qk_weight = torch.softmax(qk_score, -1).unsqueeze(2)
        pooled_key = torch.matmul(qk_weight, self._heads(mixed_query_key))  # (B, h, 1, dh)
        weighted_value = (pooled_key * query_layer).transpose(1, 2).reshape(B, N, D)
        return self.transform(weighted_value) + mixed_query


def _official(m, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    ref = OfficialFastSelfAttention(m.d_model, m.n_heads).to(x.dtype)
    # use m's parameters themselves (not copies) so gradients flow to m
    for name in ("query", "query_att", "key", "key_att", "transform"):
        setattr(ref, name, getattr(m, name))
    return ref(x, real.to(x.dtype))


def _paper_causal(m, x: torch.Tensor, real_all: torch.Tensor) -> torch.Tensor:
    B, N, D = x.shape
    h, dh = m.n_heads, m.d_head
    out = torch.zeros_like(x)
    for b in range(B):
        real = real_all[b].tolist()
        q = m.query(x[b])  # (N, D)
        k = m.key(x[b]) if m.key_branch else None
        v = q if m.value is None else m.value(x[b])
        for hd in range(h):
            sl = slice(hd * dh, (hd + 1) * dh)
            qs = [q[i, sl] for i in range(N)]

            def pool(vecs, w, i, weights_from=None, real=real, hd=hd):  # pool over the real tokens j <= i
                src = weights_from or vecs
                idx = [j for j in range(i + 1) if real[j]]
                if m.pooling == "mean":
                    return sum(vecs[j] for j in idx) / len(idx)
                wv = w[0 if w.shape[0] == 1 else hd]
                s = torch.stack([wv @ src[j] / math.sqrt(dh) for j in idx])
                a = torch.exp(s - s.max())
                a = a / a.sum()
                return sum(a[n] * vecs[j] for n, j in enumerate(idx))

            def interact(g, t, mix, hd=hd):
                if m.interaction == "product":
                    return g * t
                if m.interaction == "add":
                    return g + t
                return _head_linear(mix, torch.cat([g, t]), hd)

            first = next((i for i in range(N) if real[i]), N)
            q_glob = {i: pool(qs, getattr(m, "w_q", None), i) for i in range(first, N)}  # q*_i per prefix
            if m.key_branch:
                ks = [k[i, sl] for i in range(N)]
                ps = [interact(q_glob[i], ks[i], getattr(m, "mix_qk", None)) if i >= first else None
                      for i in range(N)]  # p_j = q*_j (.) k_j
                if m.global_key_from == "p":
                    g = {i: pool(ps, getattr(m, "w_k", None), i) for i in range(first, N)}
                else:
                    g = {i: pool(ks, getattr(m, "w_k", None), i, weights_from=ps) for i in range(first, N)}
            else:
                g = q_glob
            for i in range(first, N):
                u = interact(g[i], v[i, sl], getattr(m, "mix_kv", None))
                r = _head_linear(m.transform, u, hd) if m.transform is not None else u
                out[b, i, sl] = r + (qs[i] if m.query_residual else 0)
    return out


def _official_causal(m, x: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    B, N, D = x.shape
    h, dh = m.n_heads, m.d_head
    allowed = torch.ones(N, N, dtype=torch.bool).tril()[None, None] & real[:, None, None, :]  # (B, 1, N_i, N_j)

    def pool(scores, vecs):  # scores (B, N, h), vecs (B, N, D) -> (B, N, D): row i pools the real j <= i
        s = scores.transpose(1, 2)[:, :, None, :].expand(B, h, N, N).masked_fill(~allowed, float("-inf"))
        w = torch.softmax(s, -1).nan_to_num(0.0)  # (B, h, N_i, N_j); rows with no real j (padding) -> 0
        return (w @ vecs.view(B, N, h, dh).transpose(1, 2)).transpose(1, 2).reshape(B, N, D)

    q, k = m.query(x), m.key(x)
    q_glob = pool(m.query_att(q) / math.sqrt(dh), q)
    p = k * q_glob
    k_glob = pool(m.key_att(p) / math.sqrt(dh), p)
    return m.transform(k_glob * q) + q
