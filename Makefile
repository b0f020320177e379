# fastformer-repro -- `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# Extra pip arguments for the torch install, e.g. TORCH_INDEX="--index-url <CUDA wheel index>" (see README).
TORCH_INDEX ?=
PRESET ?= quick
DATA_ROOT ?= $(CURDIR)/data
export DATA_ROOT
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION) $(TORCH_INDEX)
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

env: $(VENV)/.installed ## create .venv (torch 2.13.0 CPU wheel by default + pinned deps) when missing

test: $(VENV)/.installed ## run the default test suite (no slow/GPU tests; a few minutes on 2 CPU cores)
	$(PY) -m pytest -q -m "not slow and not gpu" $(PYTEST_ARGS)

test-full: $(VENV)/.installed ## run every test, slow ones included
	$(PY) -m pytest -q $(PYTEST_ARGS)

bench: $(VENV)/.installed ## efficiency figure (paper Fig. 2): results/efficiency.{csv,md,png}
	$(PY) scripts/bench.py $(BENCH_ARGS)

bench-gpu: $(VENV)/.installed ## fused Triton Fastformer vs SDPA/eager/compile on a CUDA GPU: results/gpu_fastformer_<card>.md
	$(PY) scripts/bench_fastformer_gpu.py $(BENCH_ARGS)

reproduce-table: $(VENV)/.installed ## run the table sweeps (PRESET=quick|paper, DATA_ROOT=...) and write results/*.md
	$(PY) scripts/reproduce.py preset=$(PRESET) $(REPRO_ARGS)

tables: $(VENV)/.installed ## regenerate results/ tables from existing run outputs only
	$(PY) scripts/make_tables.py

train: $(VENV)/.installed ## one training run: make train ARGS="experiment=imdb/fastformer"
	$(PY) scripts/train.py $(ARGS)

clean-logs: ## delete logs/ (Hydra run dirs, checkpoints)
	rm -rf logs/

.PHONY: help env test test-full bench bench-gpu reproduce-table tables train clean-logs
