"""BigBird block-sparse attention (Zaheer et al. 2020, "Big Bird: Transformers for Longer Sequences",
arXiv 2007.14062), internal-transformer-construction (ITC) style.

Tokens are grouped in blocks of ``block_size`` (N is padded internally to a multiple). Per head:

* the first ``n_global_blocks`` blocks are global: their queries attend to every key, and every query attends to them;
* every other query block i attends to the ``window_blocks`` blocks i - w .. i + w (w = (window_blocks - 1) / 2),
  to the global blocks, and to ``n_random_blocks`` random blocks drawn from the remaining blocks (fewer when fewer
  remain). Each key block is attended at most once per query block.

The random pattern is fixed per module, head and number of blocks (as in the transformers port, which re-seeds
``np.random`` with the layer index on every training call): it is drawn from a generator seeded with (``seed``
buffer, number of blocks), so eval is deterministic and a saved module reproduces its pattern. Non-global query
blocks gather their key/value blocks (O(N K d), K = block_size * (n_global_blocks + window_blocks +
n_random_blocks)); global query rows use dense rows (O(g N d)). Padded keys are excluded; a query with no real key
to attend to gets a zero output (never NaN).

``transformers``' ``BigBirdBlockSparseAttention`` (checked in transformers 5.x) is not used: its pattern is fixed
(3-block window, first and last block global), its random blocks are replaced by block 0 in eval ("no randomness",
so eval differs from training), it needs N to be a multiple of the block size, and the model falls back to full
attention when N <= (5 + 2 r) * block_size -- so it cannot realise the options above.

Note: the random pattern depends on the number of blocks of the (padded) batch, so the same text padded to a
different batch length may see different random blocks; window and global blocks do not change.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from fastformer.mixers.base import TokenMixer, masked_softmax, register_mixer
from fastformer.ops import Dropout


def sample_distinct(n: torch.Tensor, r: int, gen: torch.Generator) -> torch.Tensor:
    """Uniform random r-subsets (Floyd's algorithm, vectorised over rows). n: (R,) sizes -> (R, r) indices in
    [0, n); rows with n < r hold all n indices and -1 in the unused slots."""
    k = n.clamp(max=r)  # (R,) how many to draw per row
    out = torch.full((n.shape[0], r), -1, dtype=torch.long)
    for t in range(r):
        s = t - (r - k)  # (R,) Floyd step; active when >= 0
        j = n - k + s  # (R,) draw from [0, j]
        u = (torch.rand(n.shape[0], generator=gen, dtype=torch.float64) * (j + 1).clamp(min=1)).long()
        u = torch.minimum(u, j.clamp(min=0))
        dup = (out[:, :t] == u[:, None]).any(1)  # already chosen -> take j (never chosen yet)
        out[:, t] = torch.where(s >= 0, torch.where(dup, j, u), torch.full_like(u, -1))
    return out


@register_mixer("bigbird")
class BigBird(TokenMixer):
    """Block-sparse attention with window, global and random blocks. Options (keyword-only):

    block_size        tokens per block (Table 8: 4; 8 for MIND)
    window_blocks     odd number of neighbouring blocks each query block attends to (3 = itself +- 1)
    n_global_blocks   leading blocks that attend / are attended globally (Table 8 global tokens / block_size)
    n_random_blocks   random key blocks per query block (Table 8 random tokens / block_size)
    dropout           dropout on attention probabilities
    bias              bias in the q/k/v/out projections
    """

    def __init__(self, d_model: int, n_heads: int, *, block_size: int = 4, window_blocks: int = 3,
                 n_global_blocks: int = 2, n_random_blocks: int = 2, dropout: float = 0.0, bias: bool = True):
        super().__init__(d_model, n_heads)
        if block_size < 1:
            raise ValueError(f"bigbird block_size={block_size} must be >= 1")
        if window_blocks < 1 or window_blocks % 2 == 0:
            raise ValueError(f"bigbird window_blocks={window_blocks} must be odd and >= 1 (3 = itself +- 1 block)")
        if n_global_blocks < 0 or n_random_blocks < 0:
            raise ValueError(f"bigbird n_global_blocks={n_global_blocks} and n_random_blocks={n_random_blocks} "
                             "must be >= 0")
        self.block_size, self.window_blocks = block_size, window_blocks
        self.n_global_blocks, self.n_random_blocks = n_global_blocks, n_random_blocks
        self.qkv = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out = nn.Linear(d_model, d_model, bias=bias)
        self.attn_drop = Dropout(dropout)
        self.register_buffer("seed", torch.randint(0, 2**62, (), dtype=torch.int64))  # from the global RNG
        self._cache: dict = {}

    @torch.no_grad()
    def random_blocks(self, n_blocks: int) -> torch.Tensor:
        """(h, n_blocks - g, r) long: random key blocks of each non-global query block (g .. n_blocks - 1), drawn
        uniformly without replacement outside its window and the global blocks; -1 = unused slot."""
        g, r, w, h = min(self.n_global_blocks, n_blocks), self.n_random_blocks, self.window_blocks // 2, self.n_heads
        i = torch.arange(g, n_blocks)  # (R,) non-global query blocks
        lo, hi = (i - w).clamp(min=g), (i + w).clamp(max=n_blocks - 1)  # window part outside the global blocks
        width = hi - lo + 1  # (R,) >= 1 (contains i)
        n_cand = n_blocks - g - width  # (R,) candidate blocks: [g, n_blocks) minus [lo, hi]
        gen = torch.Generator().manual_seed(int(self.seed) + 1_000_003 * n_blocks)
        c = sample_distinct(n_cand.repeat(h), r, gen).view(h, i.shape[0], r)  # (h, R, r) candidate ranks
        blk = g + c
        blk = torch.where(blk >= lo[None, :, None], blk + width[None, :, None], blk)  # skip the window
        return torch.where(c >= 0, blk, torch.full_like(blk, -1))

    def block_index(self, n_blocks: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Key blocks gathered by each non-global query block: index (h, R, S) and validity (h, R, S), with
        S = n_global_blocks + window_blocks + n_random_blocks slots [global | window | random]."""
        key = (n_blocks, int(self.seed), str(device))
        if key not in self._cache:
            g, w, h = min(self.n_global_blocks, n_blocks), self.window_blocks // 2, self.n_heads
            i = torch.arange(g, n_blocks)[:, None]  # (R, 1)
            glob = torch.arange(g).expand(i.shape[0], g)  # (R, g)
            win = i + torch.arange(-w, w + 1)  # (R, window_blocks)
            rnd = self.random_blocks(n_blocks)  # (h, R, r)
            idx = torch.cat([glob.expand(h, -1, -1), win.expand(h, -1, -1), rnd], dim=-1)  # (h, R, S)
            valid = torch.cat([torch.ones(h, *glob.shape, dtype=torch.bool),
                               ((win >= g) & (win < n_blocks)).expand(h, -1, -1), rnd >= 0], dim=-1)  # (h, R, S)
            self._cache[key] = (idx.clamp(0, n_blocks - 1).to(device), valid.to(device))
        return self._cache[key]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        B, N, D = x.shape
        h, dh, bs = self.n_heads, self.d_head, self.block_size
        nb = math.ceil(N / bs)
        Np, g = nb * bs, min(self.n_global_blocks, nb)
        q, k, v = self.qkv(x).view(B, N, 3, h, dh).permute(2, 0, 3, 1, 4)  # 3 x (B, h, N, dh)
        q, k, v = (F.pad(t, (0, 0, 0, Np - N)) for t in (q, k, v))  # 3 x (B, h, Np, dh)
        real = torch.ones(B, N, dtype=torch.bool, device=x.device) if mask is None else mask
        real = F.pad(real, (0, Np - N), value=False)  # (B, Np)
        scale = 1.0 / math.sqrt(dh)
        parts = []
        if g > 0:  # global query rows attend to every real key
            s = q[:, :, :g * bs] @ k.transpose(-1, -2) * scale  # (B, h, g*bs, Np)
            allowed = real[:, None, None, :]  # (B, 1, 1, Np)
            p = masked_softmax(s, allowed) * allowed.any(-1, keepdim=True)  # (B, h, g*bs, Np)
            parts.append(self.attn_drop(p) @ v)  # (B, h, g*bs, dh)
        if nb > g:  # the other query blocks attend to their gathered key blocks
            idx, valid = self.block_index(nb, x.device)  # (h, R, S)
            R, S = idx.shape[1], idx.shape[2]
            heads = torch.arange(h, device=x.device)[:, None, None]  # (h, 1, 1)
            qb = q[:, :, g * bs:].reshape(B, h, R, bs, dh)
            kg = k.view(B, h, nb, bs, dh)[:, heads, idx].reshape(B, h, R, S * bs, dh)  # gathered keys
            vg = v.view(B, h, nb, bs, dh)[:, heads, idx].reshape(B, h, R, S * bs, dh)  # gathered values
            s = torch.einsum("bhrid,bhrjd->bhrij", qb, kg) * scale  # (B, h, R, bs, S*bs)
            allowed = valid[None, :, :, :, None] & real.view(B, nb, bs)[:, idx]  # (B, h, R, S, bs)
            allowed = allowed.reshape(B, h, R, 1, S * bs)
            p = masked_softmax(s, allowed) * allowed.any(-1, keepdim=True)  # (B, h, R, bs, S*bs)
            y = torch.einsum("bhrij,bhrjd->bhrid", self.attn_drop(p), vg)  # (B, h, R, bs, dh)
            parts.append(y.reshape(B, h, R * bs, dh))
        y = torch.cat(parts, dim=2)[:, :, :N]  # (B, h, N, dh)
        return self.out(y.transpose(1, 2).reshape(B, N, D))
