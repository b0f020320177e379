"""fastformer/utils.py keep_cpu_memory: glibc keeps freed CPU tensor memory for reuse (the Trainer sets it for every
run; results/train_step_cpu.md measures what it saves)."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

_HEAP_PROBE = """
import json, os, sys
import torch
from fastformer.utils import keep_cpu_memory
kept = keep_cpu_memory()
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
x = torch.ones(64 * 2**20)          # 256 MiB, touched
del x
print(json.dumps({"kept": kept, "after_free": rss_mb()}))
"""


def _heap_probe(**env) -> dict:
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_keep_cpu_memory_keeps_freed_tensors_on_the_heap():
    """fastformer/utils.py keep_cpu_memory (the Trainer calls it for every run): a freed 256 MiB tensor stays in the
    process (resident, for the next allocations) instead of going back to the kernel, so the next step's activations
    cost no page faults; FASTFORMER_SYSTEM_MALLOC=1 leaves glibc's default, which returns it."""
    kept, system = _heap_probe(), _heap_probe(FASTFORMER_SYSTEM_MALLOC="1")
    assert kept["kept"] and not system["kept"]
    assert kept["after_free"] > system["after_free"] + 200, (kept, system)  # MiB resident after the free
