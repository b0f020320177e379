# fastformer-repro -- `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH_VERSION ?= 2.13.0
# Which torch build `make env` installs, on purpose:
#   cpu  (default without a GPU) torch==$(TORCH_VERSION)+cpu: a local CPU wheel when pip's find-links has one (offline,
#        as on the project's machines), else the PyTorch CPU wheel index (no multi-GB CUDA download; plain PyPI on
#        macOS, whose wheels are CPU-only);
#   cuda torch==$(TORCH_VERSION)+$(TORCH_CUDA) from the PyTorch CUDA wheel index (pick TORCH_CUDA for your driver);
#   auto (default) cuda when `nvidia-smi -L` lists a GPU, else cpu.
TORCH_BUILD ?= auto
TORCH_CUDA ?= cu128
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_CUDA_INDEX ?= https://download.pytorch.org/whl/$(TORCH_CUDA)
# Extra pip arguments replacing the build's index, e.g. TORCH_INDEX="--index-url <your mirror>" (see README).
TORCH_INDEX ?=
# pip constraints: the exact versions the committed results were produced with (empty: no pins, e.g. another Python).
LOCK ?= requirements/lock-cpu.txt
ifeq ($(TORCH_BUILD),auto)
BUILD := $(shell nvidia-smi -L 2>/dev/null | grep -q '^GPU' && echo cuda || echo cpu)
else
BUILD := $(TORCH_BUILD)
endif
ifeq ($(filter $(BUILD),cpu cuda),)
$(error TORCH_BUILD=$(TORCH_BUILD): use cpu, cuda or auto)
endif
ifeq ($(BUILD),cpu)
ifeq ($(shell uname -s),Darwin)
TORCH_REQ := torch==$(TORCH_VERSION)
else
TORCH_REQ := torch==$(TORCH_VERSION)+cpu
endif
TORCH_FALLBACK := --index-url $(TORCH_CPU_INDEX)
else
TORCH_REQ := torch==$(TORCH_VERSION)+$(TORCH_CUDA)
TORCH_FALLBACK := --index-url $(TORCH_CUDA_INDEX)
endif
# The stamp names the torch build it installed (.installed-2.13.0-cpu, .installed-2.13.0-cu128): another TORCH_BUILD,
# TORCH_CUDA or TORCH_VERSION is another target, so `make env` really reinstalls torch; edits to pyproject.toml or the
# lock redo the install too.
STAMP := $(VENV)/.installed-$(TORCH_VERSION)-$(if $(filter cpu,$(BUILD)),cpu,$(TORCH_CUDA))
PRESET ?= quick
DATA_ROOT ?= $(CURDIR)/data
export DATA_ROOT
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "torch build: $(BUILD) ($(TORCH_REQ))"
ifneq ($(TORCH_INDEX),)
	$(PY) -m pip install --quiet "$(TORCH_REQ)" $(TORCH_INDEX)
else
	$(PY) -m pip install --quiet "$(TORCH_REQ)" 2>/dev/null || \
		$(PY) -m pip install --quiet "$(TORCH_REQ)" $(TORCH_FALLBACK)
endif
	$(PY) -m pip install --quiet -e '.[train,dev]' $(if $(LOCK),-c $(LOCK)) "$(TORCH_REQ)"
	@rm -f $(VENV)/.installed $(VENV)/.installed-*
	@touch $@

env: $(STAMP) ## create .venv: TORCH_BUILD=auto (CUDA torch only where nvidia-smi sees a GPU) | cpu | cuda, versions pinned by requirements/lock-cpu.txt

lock: $(STAMP) ## rewrite requirements/lock-cpu.txt from .venv (pip freeze minus the project, torch, triton, nvidia-*)
	@{ echo "# Exact versions the committed results/ were produced with (Python $$($(PY) -c 'import platform; print(platform.python_version())'), $$($(PY) -m pip freeze | grep -E '^torch=='))."; \
	  echo "# Used as pip constraints by \`make env\` (-c): it pins versions, it installs nothing by itself. torch, triton and"; \
	  echo "# nvidia-* are left out: TORCH_BUILD=cpu|cuda picks them (torch==\$$(TORCH_VERSION)). Regenerate after a deliberate"; \
	  echo "# upgrade with \`make lock\` (pip freeze of .venv minus the project, torch, triton, nvidia-*)."; \
	  $(PY) -m pip freeze --exclude-editable | grep -viE '^(torch|triton|nvidia-)'; } > requirements/lock-cpu.txt.tmp
	@mv requirements/lock-cpu.txt.tmp requirements/lock-cpu.txt && echo "wrote requirements/lock-cpu.txt"

test: $(STAMP) ## run the default test suite (no slow/GPU tests; a few minutes on 2 CPU cores)
	$(PY) -m pytest -q -m "not slow and not gpu" $(PYTEST_ARGS)

test-full: $(STAMP) ## run every test, slow ones included
	$(PY) -m pytest -q $(PYTEST_ARGS)

lint: $(STAMP) ## ruff check (config in pyproject.toml)
	$(PY) -m ruff check fastformer scripts tests

bench: $(STAMP) ## efficiency figure (paper Fig. 2): results/efficiency.{csv,md,png}
	$(PY) scripts/bench.py $(BENCH_ARGS)

bench-gpu: $(STAMP) ## fused Triton Fastformer vs SDPA/eager/compile on a CUDA GPU: results/gpu_fastformer_<card>.md
	$(PY) scripts/bench_fastformer_gpu.py $(BENCH_ARGS)

data: $(STAMP) ## verify (and fetch when online) every dataset the tables use; one table; exit 1 if any is missing (DATASETS=imdb,amazon,...)
	$(PY) scripts/data.py --preset $(PRESET) $(if $(DATASETS),--datasets $(DATASETS)) $(DATA_ARGS)

reproduce-table: $(STAMP) ## run the table sweeps (PRESET=quick|paper, DATA_ROOT=...) and write results/*.md
	$(PY) scripts/reproduce.py preset=$(PRESET) $(REPRO_ARGS)

tables: $(STAMP) ## regenerate results/ tables from existing run outputs only
	$(PY) scripts/make_tables.py

wandb-tables: $(STAMP) ## log every results/ table (wandb.Table) and figure (wandb.Image) into one W&B "tables" run per PRESET
	$(PY) scripts/wandb_tables.py --preset $(PRESET) $(WANDB_ARGS)

wandb-sync: $(STAMP) ## upload every offline W&B run under logs/ (needs `wandb login` or WANDB_API_KEY)
	@runs=$$(find logs -type d -name 'offline-run-*' 2>/dev/null); \
	if [ -z "$$runs" ]; then echo "no offline W&B runs under logs/"; exit 0; fi; \
	echo "$$runs" | xargs $(VENV)/bin/wandb sync --yes $(WANDB_ARGS)

train: $(STAMP) ## one training run: make train ARGS="experiment=imdb/fastformer"
	$(PY) scripts/train.py $(ARGS)

clean-logs: ## delete checkpoints, W&B and Hydra files under logs/; keeps the run outcomes the tables are built from
	@test -d logs || exit 0; \
	find logs -type f ! -name metrics.json ! -name failed.json ! -name interaction.json -delete; \
	find logs -mindepth 1 -type d -empty -delete; \
	echo "logs/: kept $$(find logs -type f | wc -l) run outcome file(s) (metrics.json, failed.json, interaction.json)"

.PHONY: help env lock data wandb-tables wandb-sync test test-full lint bench bench-gpu reproduce-table tables train clean-logs
