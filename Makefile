# Two commands on a fresh machine: `make demo` and `make test`.
# The virtual environment and every dependency are installed on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PADIFF_VENV ?= .venv-padiff
PADIFF_STAMP := $(PADIFF_VENV)/.installed

.PHONY: install demo test lint bench clean chromium realworld

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

# The real-model suite (realworld/README.md): transformers against paddleformers, torchvision against
# paddle.vision, in its own environment (not part of `make test`). paddleformers 0.4.1 is the last release
# with BERT; the constraint keeps its dependencies from pulling another torch. torchvision's wheel is only
# unpacked: its C++ ops need CUDA torch, realworld/resnet.py imports just the pure-Python model code.
REALWORLD_VENV ?= .venv-realworld
REALWORLD_STAMP := $(REALWORLD_VENV)/.installed
REALWORLD_ARGS ?=

$(REALWORLD_STAMP): pyproject.toml
	$(PYTHON) -m venv $(REALWORLD_VENV)
	echo 'torch==2.13.0' > $(REALWORLD_VENV)/constraints.txt
	$(REALWORLD_VENV)/bin/pip install --quiet -c $(REALWORLD_VENV)/constraints.txt \
	  torch==2.13.0 paddlepaddle==3.3.1 paddleformers==0.4.1 transformers==4.55.4 -e .
	$(REALWORLD_VENV)/bin/pip download --quiet --no-deps torchvision==0.28.0 -d $(REALWORLD_VENV)/wheels
	$(REALWORLD_VENV)/bin/python -c "import glob, zipfile; \
	  wheel = zipfile.ZipFile(glob.glob('$(REALWORLD_VENV)/wheels/torchvision-0.28.0-*.whl')[0]); \
	  wheel.extractall('$(REALWORLD_VENV)/torchvision', [n for n in wheel.namelist() if n.startswith('torchvision/')])"
	touch $(REALWORLD_STAMP)

realworld: $(REALWORLD_STAMP)
	REALWORLD_TORCHVISION=$(REALWORLD_VENV)/torchvision $(REALWORLD_VENV)/bin/python -m realworld.run $(REALWORLD_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check padiff_graph tests examples benchmarks
	$(BIN)/ruff format --check padiff_graph tests examples benchmarks
	$(BIN)/mypy

# every benchmarks/bench_*.py, each printing ratios measured in one run (minutes; not part of `make test`)
bench: $(STAMP) $(PADIFF_STAMP)
	PADIFF_PYTHON=$(PADIFF_VENV)/bin/python $(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(PADIFF_VENV) .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
