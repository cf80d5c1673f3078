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
#   KATEX_VERSION  the KaTeX release `make docs` unpacks from the npm registry (needs `npm`)

PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
DEVICE ?= auto
OUT ?= results/validate
KATEX_VERSION ?= 0.16.22

BIN := $(VENV)/bin
PY := $(BIN)/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.maml-depth-installed
DOCS_STAMP := $(VENV)/.maml-depth-docs-installed
KATEX := build/docs/katex/katex.min.js

.PHONY: help install validate demo test test-all lint typecheck pytest bench bench-theory figures docs docs-snapshot docstrings clean

help:
	@echo "make validate   create $(VENV), install, validate the paper's claims, write $(OUT)/report.md"
	@echo "make test       create/update $(VENV), ruff, mypy, docstrings, docs (--strict), fast pytest (hypothesis profile 'ci')"
	@echo "make test-all   every test, slow and GPU ones included (hypothesis profile 'thorough')"
	@echo "make bench      install the bench extra (peers), then the engine benchmark table"
	@echo "make figures    regenerate the paper's analytic plots into paper_figures/gallery"
	@echo "make docs       build the documentation site into build/site (mkdocs --strict, KaTeX offline)"
	@echo "make docstrings list public names without a docstring (ruff pydocstyle D10x)"

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

# `docs` builds the site (mkdocs --strict) that the fast tests of tests/docs read, so it runs
# before pytest; `docstrings` fails on any public name without a docstring.
test: lint typecheck docstrings docs pytest

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

# The documentation site. Installs the `docs` extra, unpacks KaTeX from the npm registry
# (`npm pack`; Debian: `apt-get install -y npm`) into build/docs/katex (served by the site
# itself: no CDN when a page is viewed), assembles the installed layout of the package for
# mkdocstrings (as `typecheck` does for mypy) and builds with --strict: a broken link, an
# unknown cross-reference or a missing page fails the build.
# The slow test tests/docs/test_docs.py opens a built theory page in headless Chromium
# (Debian: `apt-get update && apt-get install -y chromium`).
$(DOCS_STAMP): pyproject.toml $(STAMP)
	$(PIP) install -q -e ".[dev,docs]"
	@touch $(DOCS_STAMP)

$(KATEX):
	@command -v npm >/dev/null || { echo "make docs needs npm to fetch KaTeX (Debian: apt-get install -y npm)"; exit 1; }
	@rm -rf build/docs/katex build/docs/npm && mkdir -p build/docs/npm
	cd build/docs/npm && npm pack --silent katex@$(KATEX_VERSION) >/dev/null && tar -xzf katex-$(KATEX_VERSION).tgz
	mkdir -p build/docs/katex && cp -r build/docs/npm/package/dist/. build/docs/katex/
	@rm -rf build/docs/npm

docs: $(DOCS_STAMP) $(KATEX)
	@rm -rf build/docs/src && mkdir -p build/docs/src/maml_depth
	@cp -r maml_depth/. build/docs/src/maml_depth/
	@for p in theory numerics validation paper_figures; do ln -s ../../../../$$p build/docs/src/maml_depth/$$p; done
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict
	@echo "site: build/site/index.html"

# Refresh the claims page's committed snapshot (docs/_data/claims-quick.json): one quick-budget
# validation run, trimmed to what the page shows.
docs-snapshot: $(STAMP)
	$(BIN)/maml-depth validate --suite all --budget quick --device $(DEVICE) --out build/docs/validate --no-progress
	$(PY) docs/_tooling/snapshot.py build/docs/validate/report.json docs/_data/claims-quick.json

# Public names without a docstring (pydocstyle D100-D104: public modules, classes, methods,
# functions and packages; magic methods and __init__ are not required to have one). A name is
# public when neither it nor a module or class around it starts with "_" and, where a module
# has __all__, it is listed there. Fails while any is missing, after a count per package.
# Part of `make test`.
DOC_PKGS := maml_depth theory numerics validation paper_figures
DOC_RULES := D100,D101,D102,D103,D104
docstrings: $(STAMP)
	@$(BIN)/ruff check --no-fix --select $(DOC_RULES) --output-format concise $(DOC_PKGS) || { \
		$(BIN)/ruff check --no-fix --select $(DOC_RULES) --output-format concise $(DOC_PKGS) 2>/dev/null \
		| awk -F/ '/: D10[0-9] / {n[$$1]++} END {for (p in n) printf "%s/: %d public names without a docstring\n", p, n[p]}' | sort; \
		exit 1; }

clean:
	rm -rf build .mypy_cache .pytest_cache .ruff_cache .hypothesis
