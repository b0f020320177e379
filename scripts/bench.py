"""Efficiency benchmark (paper Figure 2): ``make bench`` or ``python scripts/bench.py [overrides]``.

Examples::

    python scripts/bench.py                                   # CPU default (configs/bench.yaml)
    python scripts/bench.py 'mixers=[fastformer,"fastformer[compile]",transformer]' 'lengths=[512,4096]'
    python scripts/bench.py device=cuda tokens_per_batch=65536 max_length=65536 budget_s=60 warmup=3 iters=20 \
        threads=null                                          # the paper's grid on one GPU (bf16 autocast)

An existing results/efficiency.* with more measured points than this run is kept (exit 1; this run's table is in its
Hydra run dir, logs/bench/<date>/<time>/) unless ``force=true``.
"""
from __future__ import annotations

import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from fastformer.bench import run_bench


@hydra.main(version_base="1.3", config_path="../configs", config_name="bench")
def main(cfg: DictConfig) -> None:
    c = OmegaConf.to_container(cfg, resolve=True)
    c.setdefault("work_dir", None)
    c["work_dir"] = c["work_dir"] or HydraConfig.get().runtime.output_dir
    out = run_bench(c)
    if out["kept"]:
        print(out["kept"], file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
