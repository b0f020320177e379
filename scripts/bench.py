"""Efficiency benchmark (paper Figure 2): ``make bench`` or ``python scripts/bench.py [overrides]``.

Examples::

    python scripts/bench.py                                   # CPU default (configs/bench.yaml)
    python scripts/bench.py 'mixers=[fastformer,"fastformer[compile]",transformer]' 'lengths=[512,4096]'
    python scripts/bench.py device=cuda tokens_per_batch=65536 max_length=65536 budget_s=60 warmup=3 iters=20 \
        threads=null                                          # the paper's grid on one GPU (bf16 autocast)
"""
from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from fastformer.bench import run_bench


@hydra.main(version_base="1.3", config_path="../configs", config_name="bench")
def main(cfg: DictConfig) -> None:
    run_bench(OmegaConf.to_container(cfg, resolve=True))


if __name__ == "__main__":
    main()
