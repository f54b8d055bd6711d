# agr-suite: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tests and offline runs never reach a hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
PYTEST_ARGS ?=
# Paper-scale reproduction: `make reproduce-table2 LAUNCHER=slurm SEEDS=0,1,2` (SEEDS unset:
# each spec's own seeds for that scale). Locally every visible GPU runs one run at a time;
# RUNS_PER_GPU=K packs K runs on each, JOBS=N caps how many run at once (on CPU: N at once).
LAUNCHER ?= local
SEEDS ?=
SCALE ?= paper
RUNS_PER_GPU ?=
JOBS ?=
REPRODUCE = $(PY) scripts/reproduce.py --launcher $(LAUNCHER) $(if $(SEEDS),--seeds $(SEEDS)) \
	$(if $(RUNS_PER_GPU),--runs-per-gpu $(RUNS_PER_GPU)) $(if $(JOBS),--jobs $(JOBS))

.PHONY: help install lock data test test-all test-slow test-slurm lint bench-data bench-optimizer bench-train bench-gpu gpu-check reproduce-mini albert-learns \
	reproduce-table1 reproduce-table2 reproduce-table3 reproduce-ablation reproduce-neighbours tables clean

help:  ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv, install the AGR library (lib/) and agr-suite with its dev tools at the pinned versions (skips when up to date)

# Two pip commands: every distribution at the exact version and hash of requirements.lock
# (pip's hash-checking mode: nothing unpinned or unhashed gets in), then the library (./lib)
# and the suite as editable installs, with no dependencies and no build isolation (their
# build backend, setuptools, comes from the lock). requirements.lock is resolved from the
# pyproject files' ranges by `make lock`.
$(STAMP): pyproject.toml lib/pyproject.toml requirements.lock
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r requirements.lock
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e ./lib -e '.[dev]'
	@# the CPU AGR kernel, built once here so that no run pays for the build (about a minute)
	$(PY) -c "import agr.regularizer as r; print('AGR CPU kernel:', 'built' if r.load_cpu_kernel() else 'not available, torch ops instead')"
	touch $(STAMP)

# Stage the paper's data sets and the Inception weights, verified, where the runs read them
# (before a Slurm submission: compute nodes may have no network). NAMES="cifar100 tinyimagenet"
# stages some; MIRROR=https://host/path or /shared/folder fetches from a site mirror.
NAMES ?=
MIRROR ?=
DATA_DIR ?=
data: install  ## stage the paper's data sets and Inception weights, checksums verified (NAMES=..., MIRROR=URL_OR_FOLDER, DATA_DIR=...)
	$(PY) -m agr_suite.data_staging stage $(NAMES) $(if $(MIRROR),--mirror $(MIRROR)) $(if $(DATA_DIR),--data-dir $(DATA_DIR))

test: install  ## run the default (fast) test suite offline
	@$(OFFLINE) $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

test-all: install  ## run every test, the slow ones too (not the Slurm ones: make test-slurm)
	@$(OFFLINE) $(PY) -m pytest -m 'not slurm' $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

test-slow: install  ## only the slow tests (subprocess CLI runs, benchmarks' smoke runs, library install)
	@$(OFFLINE) $(PY) -m pytest -m 'slow and not slurm' $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no slow tests: failing" >&2; exit 1; fi; exit $$rc

test-slurm: install  ## sweeps on a real single-node Slurm it installs (apt, as root), starts and stops (~6 min)
	@$(OFFLINE) $(PY) -m pytest -m slurm tests/launch/test_slurm.py $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no Slurm tests: failing" >&2; exit 1; fi; exit $$rc

lint: install  ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-data: install  ## training input pipelines (torchvision vs device loader), images/s per core -> results/bench/data_pipeline.json
	$(OFFLINE) $(PY) scripts/bench_data.py

bench-optimizer: install  ## time optimizer.step() with and without AGR -> results/bench/optimizer_step.json
	$(OFFLINE) $(PY) scripts/bench_optimizer.py

bench-train: install  ## engine training images/s vs its bare step on one resident batch -> results/bench/train_throughput.json
	$(OFFLINE) $(PY) scripts/bench_train.py

bench-gpu: install  ## on a CUDA machine: epoch times, runs per GPU, DDPM, AGR step (~5 min on an H200) -> results/bench/gpu.json
	$(OFFLINE) $(PY) scripts/bench_gpu.py

gpu-check: install  ## on a CUDA machine: equivalence tests on the GPU, then bench-gpu (6.7 min on an H200)
	bash scripts/gpu_check.sh

# The mini runs use one thread each (their presets' trainer.cpu_threads), so they go one per
# core, in one process per core (scripts/reproduce.py --shards), unless JOBS asks for one
# process per run.
# They also cap the CPU kernels at AVX2 (--portable-cpu), so that the mini tables repeat
# bit for bit on other x86-64 CPU models (README, Reproducibility); PORTABLE_CPU=0 runs them
# with this CPU's own kernels.
CORES := $(shell $(PYTHON) -c 'import os; print(os.cpu_count() or 1)')
PORTABLE_CPU ?= 1
MINI_LAUNCH = $(if $(JOBS),,--shards $(CORES)) $(if $(filter 1,$(PORTABLE_CPU)),--portable-cpu)

reproduce-mini: install  ## the three tables at embedded scale on CPU, offline (12-25 min on 2 idle cores) -> results/mini/
	$(OFFLINE) $(REPRODUCE) table1 table2 table3 --scale mini $(MINI_LAUNCH)

# run.py's folder for experiment=albert_learns (configs/config.yaml's hydra.run.dir)
ALBERT_LEARNS_RUN := runs/albert-learns/docstrings-albert_tiny-adamw/seed0

albert-learns: install  ## one tiny ALBERT pre-trained on the library's docstrings on one CPU thread, judged against input-free floors (~8 min)
	$(OFFLINE) $(PY) run.py experiment=albert_learns
	$(PY) scripts/albert_learns.py $(ALBERT_LEARNS_RUN)

reproduce-table1: install  ## Table 1 (DDPM on CIFAR-10, IS/FID) at paper scale; LAUNCHER=local|slurm SEEDS=0,1,2
	$(REPRODUCE) table1

reproduce-table2: install  ## Table 2 (classification, CIFAR-100/TinyImageNet) at paper scale
	$(REPRODUCE) table2

reproduce-table3: install  ## Table 3 (ALBERT on WikiText-2 vs weight decay) at paper scale
	$(REPRODUCE) table3

reproduce-ablation: install  ## AGR's dose-response, mass-matched null, a positive control, SGD, scope and suspension (ResNet-18, CIFAR-100); SCALE=mini: digits, 16 min on 2 cores
	$(if $(filter mini,$(SCALE)),$(OFFLINE) )$(REPRODUCE) ablation_agr --scale $(SCALE) $(if $(filter mini,$(SCALE)),$(MINI_LAUNCH))

reproduce-neighbours: install  ## AGR against gradient centralization and adaptive gradient clipping (AdamW; ResNet-18 and ViT, CIFAR-100); SCALE=mini: digits, 50 runs (7 min on 2 idle Zen 4 cores; 30 runs after reproduce-mini)
	$(if $(filter mini,$(SCALE)),$(OFFLINE) )$(REPRODUCE) neighbours --scale $(SCALE) $(if $(filter mini,$(SCALE)),$(MINI_LAUNCH))

tables: install  ## make the tables from finished runs only (SCALE=paper|mini), launching nothing
	$(PY) scripts/make_table.py --scale $(SCALE)

# uv resolves requirements.in (the two pyproject files' ranges) for Python 3.11 with hashes.
# It keeps the lock's pins that still satisfy the ranges (UPGRADE=1: the newest allowed),
# and takes a pre-release only for a package that has no final release (wandb pins a few).
LOCK = $(VENV)/bin/uv pip compile requirements.in --python-version 3.11 --generate-hashes \
	--prerelease if-necessary --no-emit-package torch-agr --no-emit-package agr-suite \
	--custom-compile-command "make lock" --quiet
lock: install  ## re-resolve requirements.lock from the pyproject ranges (UPGRADE=1: newest versions); then make install
	$(LOCK) $(if $(filter 1,$(UPGRADE)),--upgrade) -o requirements.lock

clean:  ## remove caches (keeps .venv, data and runs)
	rm -rf .pytest_cache .ruff_cache build *.egg-info lib/build lib/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
