# Two targets are the quick start: `make run` (the default demo) and `make test`.
# Both build the virtual environment first when it is missing or stale.
#   TORCH: the torch requirement installed before the package. The default pin takes
#          the CPU wheel that lies on this machine type's disk; on a GPU machine pass
#          the build you want, e.g. make run TORCH="torch==2.13.0" with pip's CUDA index.
#   CORES: Snakemake's --cores (default: all).
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CORES ?= all
BIN := $(VENV)/bin

.PHONY: run test lint setup

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: setup
	$(BIN)/snakemake --cores $(CORES)

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/snakemake --lint
