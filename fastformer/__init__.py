"""fastformer-repro: reference reproduction of Fastformer (Wu et al. 2021, arXiv 2108.09084)."""
__version__ = "0.1.0"
