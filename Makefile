# The two commands: `make demo` and `make test`. Both create .venv on first use.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench install clean

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

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

demo: $(STAMP)
	$(BIN)/fastcomt demo

bench: $(STAMP)
	$(BIN)/python -m pytest -q bench --benchmark-only

clean:
	rm -rf $(VENV) build *.egg-info
