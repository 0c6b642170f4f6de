# The few commands people type. Every target creates and uses .venv in the checkout.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LINTED := $(wildcard src tests examples benchmarks)

.PHONY: install chromium demo test lint typecheck pytest bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev,postgres,ecosystem]'
	touch $(STAMP)

install: $(STAMP) chromium

# Headless Chromium renders the HTML report in tests/cli/test_report_browser.py and
# docs/check_report.py. Installed from Debian when missing; without root or the archive
# the install fails, says so, and those tests skip with that reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  (apt-get install -y chromium >/dev/null 2>&1 || \
	   (apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1)) || \
	  echo "could not install chromium (apt-get install -y chromium); the browser tests will skip"

demo: $(STAMP)
	$(BIN)/decisiontrace demo

lint: $(STAMP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

pytest: $(STAMP) chromium
	$(BIN)/pytest

test: lint typecheck pytest

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) build dist .mypy_cache .pytest_cache .ruff_cache
