# Two commands on a fresh machine: `make demo` and `make test`.
# The virtual environment and every dependency are installed on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PADIFF_VENV ?= .venv-padiff
PADIFF_STAMP := $(PADIFF_VENV)/.installed

.PHONY: install demo test lint bench clean chromium

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
	$(BIN)/ruff check padiff_graph tests examples benchmarks
	$(BIN)/ruff format --check padiff_graph tests examples benchmarks
	$(BIN)/mypy

# every benchmarks/bench_*.py, each printing ratios measured in one run (minutes; not part of `make test`)
bench: $(STAMP) $(PADIFF_STAMP)
	PADIFF_PYTHON=$(PADIFF_VENV)/bin/python $(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(PADIFF_VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
