# Set-up and checks. `make demo` and `make test` work on a fresh machine with Python >= 3.10.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test lint typecheck clean chromium

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

# Headless Chromium for the report's rendering test (tests/inference/test_report.py): Debian's
# package when it is missing and apt-get can install it (CI runs as root on Debian); otherwise
# that test is skipped and says why.
chromium:
	@if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then \
		echo "chromium: $$(command -v chromium || command -v chromium-browser)"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	else \
		echo "chromium is missing and cannot be installed here: the report rendering test will be skipped"; \
	fi

test: lint typecheck chromium
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo_out .pytest_cache .mypy_cache .ruff_cache
