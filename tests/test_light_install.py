"""The core package needs torch and numpy only: with every training / data / results dependency (and transformers)
hidden, ``fastformer`` imports and builds every mixer, the Encoder and the task models; pyproject.toml keeps those
dependencies in extras (``train``, ``hf``) that ``make env`` installs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXTRAS_ONLY = ["hydra", "omegaconf", "wandb", "datasets", "sklearn", "nltk", "rouge_score", "matplotlib", "pandas",
               "joblib", "transformers", "tokenizers", "accelerate", "tqdm", "scipy", "triton"]

SCRIPT = f"""
import importlib.abc, sys
BLOCKED = {EXTRAS_ONLY!r}
class Hide(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is hidden (not in the core install)")
sys.meta_path.insert(0, Hide())
import importlib.util
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, package=None: (  # a probe for a hidden package finds nothing, as when absent
    None if name.split(".")[0] in BLOCKED else _find_spec(name, package))
import torch
import fastformer
from fastformer import MIXERS, Encoder, TextClassifier, build_mixer
from fastformer.models.newsrec import *  # noqa
from fastformer.models.seq2seq import *  # noqa
x, mask = torch.randn(2, 12, 32), torch.ones(2, 12, dtype=torch.bool)
mask[1, 7:] = False
for name in sorted(MIXERS):
    kw = {{"max_len": 16}} if name == "linformer" else {{}}
    assert build_mixer(name, d_model=32, n_heads=4, **kw)(x, mask).shape == x.shape, name
assert Encoder(d_model=32, n_heads=4, mixer="transformer")(x, mask).shape == x.shape
clf = TextClassifier(vocab_size=50, n_classes=3, d_model=32, n_heads=4, max_len=16, mixer="fastformer")
assert clf(torch.randint(0, 50, (2, 12)), mask).shape == (2, 3)
try:
    import fastformer.hf
except ImportError as e:
    assert "transformers" in str(e), e
else:
    raise AssertionError("fastformer.hf imported without transformers")
print("ok", len(MIXERS), sorted(m.split(".")[0] for m in sys.modules if m.split(".")[0] in BLOCKED))
"""


def test_core_imports_and_builds_with_the_extras_hidden():
    r = subprocess.run([sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip().startswith("ok") and r.stdout.strip().endswith("[]"), r.stdout


def test_pyproject_core_dependencies_are_torch_and_numpy():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    core = {d.split(">")[0].split("=")[0].split("<")[0].strip() for d in meta["dependencies"]}
    assert core == {"torch", "numpy"}
    extras = meta["optional-dependencies"]
    train = " ".join(extras["train"])
    for pkg in ("hydra-core", "omegaconf", "wandb", "datasets", "scikit-learn", "nltk", "rouge-score", "matplotlib",
                "pandas", "hydra-joblib-launcher", "fastformer-repro[hf]"):
        assert pkg in train, pkg
    assert {"transformers", "tokenizers", "accelerate"} <= {d.split(">")[0].split("=")[0] for d in extras["hf"]}
    assert "-e '.[train,dev]'" in (ROOT / "Makefile").read_text()
