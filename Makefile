# Set-up and checks. `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint typecheck clean

$(BIN)/autoseg: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first: an unpinned torch would pull several GB of CUDA wheels.
	# On a GPU server, install your CUDA build of torch instead and skip this line.
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/autoseg

demo: install
	$(BIN)/autoseg demo --out demo_out

lint: install
	$(BIN)/ruff check autoseg tests benchmarks
	$(BIN)/ruff format --check autoseg tests benchmarks
	$(BIN)/hadolint Dockerfile

typecheck: install
	$(BIN)/mypy autoseg

test: lint typecheck
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo_out .pytest_cache .mypy_cache .ruff_cache
