# Two commands on a fresh machine: `make demo` and `make test`.
# The virtual environment and every dependency are installed on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PADIFF_VENV ?= .venv-padiff
PADIFF_STAMP := $(PADIFF_VENV)/.installed

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

# PaDiff 0.2, the baseline of the benchmark, in its own environment (it pins nothing and needs PyYAML)
$(PADIFF_STAMP):
	$(PYTHON) -m venv $(PADIFF_VENV)
	$(PADIFF_VENV)/bin/pip install --quiet torch==2.13.0 paddlepaddle==3.3.1 padiff==0.2.0 PyYAML
	touch $(PADIFF_STAMP)

# diff's overhead against the plain training step and PaDiff (minutes; not part of `make test`)
bench: $(STAMP) $(PADIFF_STAMP)
	$(BIN)/python benchmarks/bench_diff.py --padiff-python $(PADIFF_VENV)/bin/python

lint: $(STAMP)
	$(BIN)/ruff check padiff_graph tests examples
	$(BIN)/ruff format --check padiff_graph tests examples
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(PADIFF_VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
