# Two commands on a fresh machine: `make demo` and `make test`.
# The virtual environment and every dependency are installed on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch only as this exact CPU build (any other spec pulls a multi-GB CUDA wheel)
	$(BIN)/pip install --quiet torch==2.13.0 paddlepaddle==3.3.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/padiff-graph demo

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check padiff_graph tests examples benchmarks
	$(BIN)/ruff format --check padiff_graph tests examples benchmarks
	$(BIN)/mypy

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
