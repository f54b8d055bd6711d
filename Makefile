# agr-suite: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Tests and offline runs never reach a hub.
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 WANDB_MODE=disabled
PYTEST_ARGS ?=

.PHONY: help install test test-all lint bench-optimizer bench-train gpu-check reproduce-mini clean

help:  ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv with pip and install agr-suite with its dev tools (skips when up to date)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: install  ## run the default (fast) test suite offline
	@$(OFFLINE) $(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

test-all: install  ## run every test, the slow ones too
	@$(OFFLINE) $(PY) -m pytest -m '' $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest ran no tests: failing" >&2; exit 1; fi; exit $$rc

lint: install  ## ruff check and format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench-optimizer: install  ## time optimizer.step() with and without AGR -> results/bench/optimizer_step.json
	$(OFFLINE) $(PY) scripts/bench_optimizer.py

bench-train: install  ## engine vs bare-loop training images/s -> results/bench/train_throughput.json
	$(OFFLINE) $(PY) scripts/bench_train.py

gpu-check: install  ## on a CUDA machine: equivalence tests on the GPU and the step benchmark
	bash scripts/gpu_check.sh

reproduce-mini:  ## the three tables at embedded scale on CPU (not built yet)
	@echo "reproduce-mini is not built yet: the training engine and tasks come first (see README, Status)" >&2; exit 1

clean:  ## remove caches (keeps .venv, data and runs)
	rm -rf .pytest_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
