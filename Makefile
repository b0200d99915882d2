# Developer entry points. `make demo` and `make test` set themselves up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TOOLS  := $(CURDIR)/.tools
export PATH := $(TOOLS)/bin:$(PATH)

.PHONY: demo test lint typecheck unit tools bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(TOOLS)/.installed: .ci/tools.sh
	bash .ci/tools.sh $(TOOLS)
	touch $@

tools: $(TOOLS)/.installed

demo: $(VENV)/.installed
	$(BIN)/snowmon demo

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy --strict monitor

unit: $(VENV)/.installed tools
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) $(TOOLS) .mypy_cache .ruff_cache .pytest_cache
