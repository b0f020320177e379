"""Small tensor ops shared by the mixers and the models (no fastformer imports: the lowest layer).

``Dropout``: ``nn.Dropout`` with a faster CPU path. On this project's 2-core CPU, torch's dropout (a Bernoulli draw per
element) took 28% of a d_model-128 Fastformer classifier's training step -- more than all its matmuls but one --
because ``bernoulli_`` draws one double per element: 55 ms for a (64, 260, 256) tensor against 1.2 ms for a multiply.
The fast path draws 16 random bits per element (one int64 draw per four elements) and keeps an element when its low
15 bits are >= ``round(p * 32768)``, then rescales by ``1 / (1 - p')`` with ``p' = round(p * 32768) / 32768`` (the
drop probability as realised, within 1.5e-5 of ``p``; unbiased): 13.5 ms for the same tensor. It uses torch's CPU
generator, so runs stay seeded and resumable. It is switched on per run by ``trainer.cpu_dropout=fast`` (the Trainer
calls :func:`set_cpu_dropout`); on CUDA, in eval mode, under torch.compile (whose generated code draws the mask in
its fused kernel; the in-place ``random_`` would break the graph), or with ``torch`` it is ``nn.Dropout`` itself. The
two draw different masks from the same seed, so a run's numbers depend on the setting (recorded in metrics.json).
"""
from __future__ import annotations

import torch
from torch import nn

_CPU_DROPOUT = {"impl": "torch"}
CPU_DROPOUT_IMPLS = ("torch", "fast")


def set_cpu_dropout(impl: str) -> None:
    """``"fast"``: :class:`Dropout` modules use the 16-bit-mask path on CPU tensors; ``"torch"``: ``nn.Dropout``."""
    if impl not in CPU_DROPOUT_IMPLS:
        raise ValueError(f"trainer.cpu_dropout={impl!r} is not one of {list(CPU_DROPOUT_IMPLS)}")
    _CPU_DROPOUT["impl"] = impl


def cpu_dropout() -> str:
    return _CPU_DROPOUT["impl"]


def fast_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Training-mode dropout of a CPU tensor from 16 random bits per element (see the module docstring)."""
    thr = int(round(p * 32768))
    if thr <= 0:
        return x
    if thr >= 32768:
        return torch.zeros_like(x)
    n = x.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_()  # [0, 2**63): 4 x 16 bits, top bit of each masked
    keep = (bits.view(torch.int16)[:n].view(x.shape) & 0x7FFF) >= thr
    # bool -> float runs 3-4x slower than uint8 -> float here (a (64, 340, 256) mask: 2.5 vs 0.8 ms on two threads):
    # the same 0 / 1 values through the byte view, so the same mask and the same numbers
    return x * keep.view(torch.uint8).to(x.dtype).mul_(32768 / (32768 - thr))


class Dropout(nn.Dropout):
    """``nn.Dropout`` (same arguments and state) whose CPU training path is :func:`fast_dropout` when the run asked for
    it (``trainer.cpu_dropout=fast``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.training and _CPU_DROPOUT["impl"] == "fast" and x.device.type == "cpu" and not self.inplace
                and x.is_floating_point() and self.p > 0 and not torch.compiler.is_compiling()):
            return fast_dropout(x, self.p)
        return super().forward(x)
