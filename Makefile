# Two commands on a fresh machine: `make demo` and `make test`.
# The virtual environment and every dependency are installed on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PADIFF_VENV ?= .venv-padiff
PADIFF_STAMP := $(PADIFF_VENV)/.installed

.PHONY: install demo test lint bench clean chromium peer-test

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch only as this exact CPU build (any other spec pulls a multi-GB CUDA wheel)
	$(BIN)/pip install --quiet torch==2.13.0 paddlepaddle==3.3.1
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/padiff-graph demo

# The HTML report tests open pages in headless Chromium, from Debian's package
# (CI runs as root on a bare Debian machine); elsewhere they skip without it.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else echo "note: no chromium, so the HTML report tests skip (apt-get install chromium)"; fi; }

test: $(STAMP) chromium
	$(BIN)/python -m pytest

# PaDiff 0.2, the baseline of the benchmark, in its own environment (it pins nothing and needs PyYAML)
$(PADIFF_STAMP):
	$(PYTHON) -m venv $(PADIFF_VENV)
	$(PADIFF_VENV)/bin/pip install --quiet torch==2.13.0 paddlepaddle==3.3.1 padiff==0.2.0 PyYAML
	touch $(PADIFF_STAMP)

lint: $(STAMP)
	$(BIN)/ruff check padiff_graph tests examples benchmarks scripts
	$(BIN)/ruff format --check padiff_graph tests examples benchmarks scripts
	$(BIN)/mypy

# every benchmarks/bench_*.py, each printing ratios measured in one run (minutes; not part of `make test`)
bench: $(STAMP) $(PADIFF_STAMP)
	PADIFF_PYTHON=$(PADIFF_VENV)/bin/python $(BIN)/python benchmarks/run.py

# PaDiff's own tests/ against padiff_graph.compat, each file in its own pytest process behind a two-line
# `padiff` package (not part of `make test`: it needs a PaDiff checkout): make peer-test PADIFF=/path/to/PaDiff
peer-test: $(STAMP)
	@test -n "$(PADIFF)" || { echo "usage: make peer-test PADIFF=/path/to/PaDiff"; exit 2; }
	$(BIN)/python scripts/peer_test.py $(PADIFF)

clean:
	rm -rf $(VENV) $(PADIFF_VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
