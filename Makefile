# Two targets are the quick start: `make run` (the default demo) and `make test`.
# Both build the virtual environment first when it is missing or stale.
#   TORCH: the torch requirement installed before the package. The default pin takes
#          the CPU wheel that lies on this machine type's disk; on a GPU machine pass
#          the build you want, e.g. make run TORCH="torch==2.13.0" with pip's CUDA index.
#   CORES: Snakemake's --cores (default: all).
# Every other package comes at the exact version requirements.lock names (pip-tools' format);
# `make lock` re-resolves it to the newest versions pyproject.toml allows, with torch at TORCH.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
CORES ?= all
BIN := $(VENV)/bin

LOCK := requirements.lock
LOCK_VENV := .venv-lock

.PHONY: run test test-fast lint setup slurm-packages lock push pull

setup: $(VENV)/.installed

# torch first (the build TORCH names: CPU or CUDA), then the locked versions, then the package
# itself without resolving anything more; pip check fails if the lock misses a requirement.
$(VENV)/.installed: pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

# Update requirements.lock: every dependency of pyproject.toml (test extra included) at the newest
# version it allows, resolved against torch at TORCH; torch itself stays out (TORCH installs it).
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || ($(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet pip-tools==7.6.2)
	echo "$(TORCH)" > $(LOCK_VENV)/torch.txt
	CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/pip-compile --quiet --upgrade --extra test --strip-extras --no-emit-index-url --no-emit-find-links \
		--unsafe-package torch --constraint $(LOCK_VENV)/torch.txt \
		--output-file $(LOCK) pyproject.toml

run: setup
	$(BIN)/snakemake --cores $(CORES)

# The suite runs on TEST_WORKERS pytest-xdist workers (default 2, one per core of the machines it is
# sized for); the tests that read one shared whole-pipeline run stay on one worker (--dist loadgroup).
TEST_WORKERS ?= 2
PYTEST := $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadgroup

test: setup slurm-packages
	$(PYTEST)

# The fast tier: unit tests on synthetic corpora and tiny models, no Snakemake runs.
test-fast: setup
	$(PYTEST) -m "not slow and not slurm"

# The SLURM test starts a one-node cluster from Debian's slurm-wlm and munge. As root with
# apt-get, install them when missing; elsewhere the test is skipped with its reason.
slurm-packages:
	@if command -v slurmctld >/dev/null && command -v munged >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null; \
	else echo "slurm-wlm/munge missing and not root: the SLURM test will be skipped"; fi

# Share a versioned run through the DVC remote (docs/remote.md): REMOTE=<name> for another than
# the default. push needs the run recorded in dvc.lock (dvc repro); pull checks every fetched file
# against its hash before it checks anything out, and then marks the run current for Snakemake.
# REMOTE reaches the command through the environment, quoted: a value never runs as shell code.
# Both need the environment only to exist (made when missing): an environment older than
# pyproject.toml or the lock is not reinstalled under them (a .venv shared by clones would then run
# another clone's code).
REMOTE ?=
export REMOTE
push pull:
	@test -f $(VENV)/.installed || $(MAKE) setup
	$(BIN)/python workflow/scripts/versioned.py $@ $${REMOTE:+--remote "$$REMOTE"}

lint: setup
	$(BIN)/ruff check
	$(BIN)/snakemake --lint
