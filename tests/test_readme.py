"""Every `scripts/train.py` command of the README's "Running experiments" block runs, at tiny scale: the same command
with overrides appended that shrink the model and data, point the data root at fixtures, and (for a sweep) narrow it
to one experiment and seed. A README command that stops working fails here, not in a reader's terminal."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = ROOT.joinpath("README.md").read_text().split("## Running experiments")[1].split("```")[1]
COMMANDS = [line.split("#")[0].strip() for line in BLOCK.splitlines() if "scripts/train.py" in line]
TINY = ["logger=none", "trainer.max_epochs=1", "trainer.limit_train_batches=2", "trainer.progress_bar=false",
        "model.d_model=16", "model.n_heads=2", "data.max_len=16", "data.max_train=64", "data.max_eval=16"]


def test_readme_has_the_commands():
    assert len(COMMANDS) >= 5 and any(" -m " in c for c in COMMANDS) and any("ablation=" in c for c in COMMANDS)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.split("train.py", 1)[1].strip()[:50])
def test_readme_command_runs_tiny(command, fixture_root, tmp_path):
    args = shlex.split(command)[2:]  # drop ".venv/bin/python scripts/train.py"
    extra = [f"data.root={fixture_root}", f"paths.cache_dir={tmp_path}/cache", *TINY]
    if "data=text_jsonl" in args:
        extra.append("data.path=text/data.jsonl")  # the fixture's own file in place of the README's example path
    if "-m" in args:
        extra += [f"hydra.sweep.dir={tmp_path}/multirun", "hydra/launcher=basic"]
        if any(a.startswith("+sweep=") for a in args):
            extra += ["experiment=imdb/fastformer", "seed=1"]  # one cell of the sweep
    else:
        extra.append(f"hydra.run.dir={tmp_path}/run")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), *args, *extra], cwd=ROOT,
                       capture_output=True, text=True, timeout=600, env={**os.environ, "PROJECT_ROOT": str(ROOT)})
    assert r.returncode == 0, (command, r.stderr[-2500:])
    assert list(tmp_path.rglob("metrics.json")), command
    assert not re.search(r"^Traceback", r.stderr, re.M)
