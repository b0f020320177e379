"""Slow, obviously-correct references for the mixers (the fla ``naive.py`` pattern).

``fastformer.mixers.naive.<name>.reference(mixer, x, mask) -> y`` recomputes ``mixer(x, mask)`` from the paper's
equations with the mixer's own parameters, using explicit loops / dense masks, so tests can compare the fast code
against it in float64 (forward and gradients). ``mask`` is (B, N) bool or None.
"""
