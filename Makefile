# `make bench`: create .venv if missing, install segbench, run the default suite on the embedded dataset.
# `make test`:  run the whole test suite in that environment.
PYTHON ?= python3
# `make zoo` and `make test-zoo` work in their own venv (torchvision needs another torch than the core's).
ifneq ($(filter zoo test-zoo,$(MAKECMDGOALS)),)
VENV ?= .venv-zoo
endif
VENV ?= .venv
BIN := $(VENV)/bin
# This machine has the CPU build of torch 2.13.0 on disk; a plain `torch` would pull a multi-GB CUDA build.
# On a GPU machine install your CUDA torch into .venv first (this step is skipped when torch imports),
# or run e.g. `make bench TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"`.
TORCH_SPEC ?= torch==2.13.0
OUT ?= results/bench-default
PYTEST_ARGS ?=

.PHONY: install bench test zoo test-zoo bench-baseline bench-check clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install $(TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# The model zoo (segbench[zoo]: torchvision, segmentation-models-pytorch, timm) in its own venv, .venv-zoo by
# default: torchvision 0.29.1 does not import beside the core's torch 2.13.0, and the only torch 2.14.1 on this
# machine's mirror is the CUDA build (5.5 GB; it runs on the CPU). `.venv` keeps torch 2.13.0 for the core.
ZOO_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
$(BIN)/.installed-zoo: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -c "import torch, torchvision" 2>/dev/null || $(BIN)/python -m pip install $(ZOO_TORCH_SPEC)
	$(BIN)/python -m pip install -e ".[dev,zoo]"
	touch $(BIN)/.installed $@

zoo: $(BIN)/.installed-zoo

# The zoo's tests (they skip in a venv without the extra).
test-zoo: zoo
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest tests/test_zoo.py $(PYTEST_ARGS)

bench: install
	$(BIN)/segbench run --datasets synthetic,synthetic-multiclass --quick --out $(OUT)

# One thread: the tests train tiny models, where a second thread costs more in synchronisation than it saves,
# and the accuracy baselines in tests/regression/ were recorded at one thread (thread count moves float sums).
test: install
	OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# Speed regression checks (pytest-benchmark): save a baseline once, then compare later runs with it.
# Fails when a benchmark's median is more than BENCH_TOLERANCE slower than the baseline's.
BENCH_TOLERANCE ?= 25%
bench-baseline: install
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable --benchmark-save=baseline

bench-check: install
	$(BIN)/python -m pytest tests/benchmarks --benchmark-enable --benchmark-compare --benchmark-compare-fail=median:$(BENCH_TOLERANCE)

clean:
	rm -rf .venv .venv-zoo .pytest_cache .benchmarks
