# Two commands: `make demo` (set up, run the main job at small scale) and `make test` (set up, run the tests).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
SHARED ?= ../shared
BIN := $(VENV)/bin
STAMP := $(VENV)/.tansaku-installed
# the wheel whose mat2vec vectors lgbm-attn reads (tansaku fetches and checks it itself on first use); the tests
# copy it into their private cache so that they need no network
MAT2VEC := $(VENV)/wheels/elementembeddings-0.8.0-py3-none-any.whl
# PyTorch for the CHGNet descriptors (tansaku[mlip]): pinned to the CPU build this machine keeps on disk; elsewhere
# e.g. TORCH="torch --index-url https://download.pytorch.org/whl/cpu" avoids downloading a CUDA build
TORCH ?= torch==2.13.0

.PHONY: setup qe build-tools chromium demo test lint bench clean

setup: $(STAMP) $(MAT2VEC) qe

$(STAMP): pyproject.toml | build-tools
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[test,mlip,transport]'
	touch $(STAMP)

# BoltzTraP2 (tansaku[transport]) compiles: cmake, and googletest for its bundled spglib (else it downloads it)
build-tools:
	@if command -v cmake >/dev/null && [ -e /usr/include/gtest/gtest.h ]; then \
		echo "cmake and googletest found"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing cmake and googletest with apt-get (to build BoltzTraP2)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends cmake libgtest-dev >/dev/null; \
	else \
		echo "cmake or googletest (libgtest-dev) missing and cannot apt-get install them without root"; \
	fi

$(MAT2VEC): | $(STAMP)
	$(BIN)/python -m pip download --quiet --no-deps --dest $(VENV)/wheels elementembeddings==0.8.0

# Quantum ESPRESSO (pw.x, ph.x) from Debian when it is not on PATH; needs root, else says what to do.
qe:
	@if command -v pw.x >/dev/null && command -v ph.x >/dev/null; then \
		echo "Quantum ESPRESSO found: $$(command -v pw.x)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing Quantum ESPRESSO with apt-get"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends quantum-espresso >/dev/null; \
	else \
		echo "Quantum ESPRESSO (pw.x) not found and cannot apt-get install it without root:"; \
		echo "install it (e.g. 'sudo apt-get install quantum-espresso') to run the DFT parts; skipping."; \
	fi

# Debian's chromium for the browser tests of `tansaku serve` (Playwright drives it; it downloads no browser).
chromium:
	@if command -v chromium >/dev/null; then \
		echo "chromium found: $$(command -v chromium)"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium with apt-get (for the browser tests)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; \
	else \
		echo "chromium not found and cannot apt-get install it without root: the browser tests need it"; \
	fi

demo: setup
	$(BIN)/python -m tansaku.demo --shared $(SHARED) --out demo

test: setup chromium
	bash .ci/services.sh $(BIN)/python -m pytest -q -n auto --dist loadgroup --durations=15

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) demo .pytest_cache
