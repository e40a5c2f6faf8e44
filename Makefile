# Two commands do everything on a fresh machine with Python 3.11 and pip: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# A CPU build of torch: on this project's machines pip finds torch 2.13.0+cpu on local disk. Elsewhere, point
# pip at the CPU wheels so set-up never pulls a multi-GB CUDA build:
#   make demo TORCH_INDEX=--index-url=https://download.pytorch.org/whl/cpu
TORCH ?= torch==2.13.0
TORCH_INDEX ?=

.PHONY: setup demo test bench dev clean
setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q $(TORCH_INDEX) "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $@

demo: setup  ## run the main job on the embedded default scene and print a summary
	$(BIN)/python -m geoembed_assets.instance_config .dagster_home
	$(BIN)/python -m geoembed_assets.cli run $(ARGS)

test: setup  ## run the test suite
	$(BIN)/python -m pytest -q $(ARGS)

bench: setup  ## print the benchmarks (chipping; embedding speed and rate-distortion after `make demo`)
	$(BIN)/python benchmarks/bench_foundation.py
	$(BIN)/python benchmarks/bench_embeddings.py

dev: setup  ## the Dagster web UI on http://127.0.0.1:3000
	$(BIN)/python -m geoembed_assets.instance_config .dagster_home
	DAGSTER_HOME=$(CURDIR)/.dagster_home $(BIN)/dagster dev -w workspace.yaml

clean:
	rm -rf data/chips data/checkpoints data/embeddings data/catalog data/size_predictions data/landcover \
		data/thumbnails data/dagster data/reports .dagster_home
