# bakemon: two commands do all the set-up.
#   make demo   install into .venv and run the demo (embedded broker + simulated traffic)
#   make test   install into .venv and run the whole suite (ruff, mypy, pytest)
#   make check-deploy  validate deploy/ with the real tools that install (see docs/deploy-checks.md)
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck bench clean check-deploy

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/bakemon demo

lint: $(STAMP)
	$(VENV)/bin/ruff check monitor detectors bakesim tests benchmarks
	$(VENV)/bin/ruff format --check monitor detectors bakesim tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy

# Two workers (CI has 2 cores): each test starts its own broker on a free port, so they are
# independent; the slowest are listed at the end.
test: $(STAMP) lint typecheck
	$(PY) -m pytest -q -n 2 --durations=15

# The validators come from PyPI (extra "deploy-check") and Debian (promtool, package prometheus);
# one that does not install is skipped with a notice, one that runs and fails fails the target.
check-deploy: $(STAMP)
	$(PY) -m pip install --quiet -e '.[deploy-check]' || echo "deploy-check tools did not install: those checks will be skipped" >&2
	$(PY) tests/recipes/_validators.py

bench: $(STAMP)
	$(PY) -m benchmarks.detection

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
