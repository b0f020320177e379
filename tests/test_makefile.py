"""`make env` picks the torch build on purpose (TORCH_BUILD=cpu|cuda|auto) and its stamp names that build, so a
different choice really reinstalls; checked with `make -n` / `make -q` against a scratch VENV (nothing installed)."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(shutil.which("make") is None or platform.system() != "Linux",
                                reason="needs make on Linux (macOS takes plain PyPI torch, CPU-only there)")


def _make(*args: str, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": path if path is not None else os.environ["PATH"]}
    return subprocess.run(["make", "--no-print-directory", *args], cwd=ROOT, capture_output=True, text=True, env=env)


def _path_with_nvidia_smi(tmp_path: Path, gpu: bool) -> str:
    """PATH with a fake `nvidia-smi` (listing one GPU, or failing like a machine without a driver) in front."""
    bin_dir = tmp_path / ("gpu" if gpu else "nogpu")
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n" if gpu else "#!/bin/sh\nexit 9\n")
    smi.chmod(0o755)
    return f"{bin_dir}:{os.environ['PATH']}"


@pytest.mark.parametrize("build,gpu,req", [("cpu", True, "torch==2.13.0+cpu"), ("cuda", False, "torch==2.13.0+cu128"),
                                           ("auto", False, "torch==2.13.0+cpu"), ("auto", True, "torch==2.13.0+cu128")])
def test_env_installs_the_chosen_build(tmp_path, build, gpu, req):
    venv = tmp_path / "venv"
    r = _make("-n", "env", f"TORCH_BUILD={build}", f"VENV={venv}", path=_path_with_nvidia_smi(tmp_path, gpu))
    assert r.returncode == 0, r.stderr
    tag = req.split("+")[1]
    assert f'"{req}"' in r.stdout and f"touch {venv}/.installed-2.13.0-{tag}" in r.stdout, r.stdout
    index = "https://download.pytorch.org/whl/" + tag
    assert index in r.stdout  # fallback when no local wheel: the build's own index, never plain PyPI's CUDA default
    assert "-c requirements/lock-cpu.txt" in r.stdout  # the exact versions of the committed results


def test_stamp_depends_on_the_build(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed-2.13.0-cpu").touch()  # newer than pyproject.toml and the lock
    assert _make("-q", "env", "TORCH_BUILD=cpu", f"VENV={venv}").returncode == 0  # up to date: nothing to do
    assert _make("-q", "env", "TORCH_BUILD=cuda", f"VENV={venv}").returncode == 1  # another build: reinstall
    assert _make("-q", "env", "TORCH_BUILD=cpu", "TORCH_VERSION=2.12.0", f"VENV={venv}").returncode == 1
    (venv / ".installed-2.13.0-cu128").touch()
    assert _make("-q", "env", "TORCH_BUILD=cuda", "TORCH_CUDA=cu126", f"VENV={venv}").returncode == 1


def test_unknown_build_is_one_clear_error(tmp_path):
    r = _make("-n", "env", "TORCH_BUILD=rocm", f"VENV={tmp_path / 'venv'}")
    assert r.returncode != 0 and "TORCH_BUILD=rocm: use cpu, cuda or auto" in r.stderr, r.stderr


def test_clean_logs_keeps_the_run_outcomes(tmp_path):
    """`make clean-logs` frees checkpoints, W&B and Hydra files but keeps what the tables are built from."""
    keep = ["logs/multiruns/quick/imdb/fastformer/seed1/metrics.json",
            "logs/multiruns/quick/imdb/transformer/seed1/failed.json",
            "logs/multiruns/quick/probe/x/seed1/interaction.json"]
    drop = ["logs/multiruns/quick/imdb/fastformer/seed1/checkpoints/last.pt",
            "logs/multiruns/quick/imdb/fastformer/seed1/wandb/offline-run-1/run-1.wandb",
            "logs/multiruns/quick/imdb/fastformer/seed1/.hydra/config.yaml", "logs/bench/2026-12-03/10-00-00/a.csv"]
    for f in keep + drop:
        (tmp_path / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / f).write_text("x")
    r = subprocess.run(["make", "--no-print-directory", "-f", str(ROOT / "Makefile"), "clean-logs"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert sorted(str(p.relative_to(tmp_path)) for p in (tmp_path / "logs").rglob("*") if p.is_file()) == sorted(keep)
    assert not (tmp_path / "logs" / "bench").exists()  # emptied folders go too
    assert "kept 3 run outcome file(s)" in r.stdout
