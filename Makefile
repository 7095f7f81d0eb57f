# The README's two commands: `make demo` (the main job) and `make test`. Each sets itself up from scratch.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lab lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,conformance]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/d365kit demo

# Interactive use: JupyterLab (the optional `lab` extra) on the notebooks (--allow-root in a root container).
lab: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[lab]'
	$(BIN)/jupyter lab notebooks/ $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP)
	$(BIN)/ruff check d365kit tests bench
	$(BIN)/ruff format --check d365kit tests bench
	$(BIN)/python -m pytest -q -ra

# The benchmarks' baselines (the `bench` extra), installed on first use and after pyproject.toml changes.
BENCH_STAMP := $(VENV)/.installed-bench

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/d365kit bench

lint: $(STAMP)
	$(BIN)/ruff check d365kit tests bench
	$(BIN)/ruff format --check d365kit tests bench

clean:
	rm -rf $(VENV) .pytest_cache reports
