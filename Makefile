# maml-depth — set-up, validation, tests, benchmarks.
#
# Variables (override on the command line, e.g. `make test PYTHON=python3.12`):
#   PYTHON      interpreter that creates the virtual environment (default: python3)
#   VENV        where the virtual environment lives (default: .venv)
#   TORCH_SPEC  the torch requirement installed *before* the package. The default is the
#               CPU build that lies on this machine's disk, so no multi-GB CUDA build is
#               downloaded. On a GPU machine choose a CUDA build, e.g.
#                 make validate TORCH_SPEC='torch==2.13.0' TORCH_PIP_ARGS='--index-url <your CUDA wheel index>'
#   TORCH_PIP_ARGS  extra pip arguments for the torch install (default: none)
#   DEVICE      device for validate/bench: auto|cpu|cuda (default: auto)
#   OUT         output folder of `make validate` (default: results/validate)

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
DEVICE ?= auto
OUT ?= results/validate

BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.maml-depth-installed

.PHONY: help install validate demo test test-all lint typecheck pytest bench bench-theory figures clean

help:
	@echo "make validate   create $(VENV), install, validate the paper's claims, write $(OUT)/report.md"
	@echo "make test       create/update $(VENV), ruff, mypy, fast pytest (hypothesis profile 'ci')"
	@echo "make test-all   every test, slow and GPU ones included (hypothesis profile 'thorough')"
	@echo "make bench      install the bench extra (peers), then the engine benchmark table"
	@echo "make figures    regenerate the paper's analytic plots into paper_figures/gallery"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Re-install whenever the package metadata changes. torch first, so that the package's
# `torch` requirement is already satisfied by the chosen (CPU) build.
$(STAMP): pyproject.toml | $(PY)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PIP) install -q -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

validate: $(STAMP)
	$(BIN)/maml-depth validate --budget quick --device $(DEVICE) --out $(OUT)

demo: $(STAMP)
	$(BIN)/maml-depth train --demo --device $(DEVICE)

lint: $(STAMP)
	$(BIN)/ruff check maml_depth theory numerics validation paper_figures tests

# mypy cannot follow setuptools' package-dir mapping, so it checks a link tree that has the
# installed layout (maml_depth/theory -> theory/, ...), rebuilt each time from the work tree.
typecheck: $(STAMP)
	@rm -rf build/typecheck && mkdir -p build/typecheck/maml_depth
	@cp -r maml_depth/. build/typecheck/maml_depth/
	@for p in theory numerics validation paper_figures; do ln -s ../../../$$p build/typecheck/maml_depth/$$p; done
	cd build/typecheck && ../../$(BIN)/mypy --config-file ../../pyproject.toml -p maml_depth

pytest: $(STAMP)
	HYPOTHESIS_PROFILE=ci $(BIN)/pytest -m "not slow and not gpu" -q

test: lint typecheck pytest

test-all: $(STAMP)
	HYPOTHESIS_PROFILE=thorough $(BIN)/pytest -q

# The peers (higher, torchopt) are the `bench` extra: installed first, so the table has them
# (a peer that still fails to install or run is reported as unavailable, not dropped).
bench: $(STAMP)
	$(PIP) install -q -e ".[dev,bench]" || echo "make bench: the bench extra did not install; peers will show as unavailable"
	$(BIN)/maml-depth bench --device $(DEVICE)

bench-theory: $(STAMP)
	$(BIN)/maml-depth bench --theory

figures: $(STAMP)
	$(BIN)/maml-depth figures --budget quick --out paper_figures/gallery --readme paper_figures/README.md

clean:
	rm -rf build .mypy_cache .pytest_cache .ruff_cache .hypothesis
