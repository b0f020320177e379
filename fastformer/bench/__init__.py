"""Efficiency benchmark (paper Figure 2): per-layer inference / training time and peak memory of every mixer.

``run_bench(cfg)`` (fields of configs/bench.yaml) -> results/efficiency.{csv,md,png}; see ``scripts/bench.py``.
"""
from fastformer.bench.grid import PAPER_LENGTHS, GridConfig, MixerSpec, Row, parse_specs, run_grid
from fastformer.bench.runner import run_bench
from fastformer.bench.timing import measure

__all__ = ["PAPER_LENGTHS", "GridConfig", "MixerSpec", "Row", "measure", "parse_specs", "run_bench", "run_grid"]
