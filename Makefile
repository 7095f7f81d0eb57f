# The README's two commands: `make demo` (the main job) and `make test`. Each sets itself up from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/d365kit demo

test: $(STAMP)
	$(BIN)/ruff check d365kit tests
	$(BIN)/python -m pytest -q -ra

bench: $(STAMP)
	$(BIN)/d365kit bench

lint: $(STAMP)
	$(BIN)/ruff check d365kit tests
	$(BIN)/ruff format --check d365kit tests

clean:
	rm -rf $(VENV) .pytest_cache reports
