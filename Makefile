# The two quickstart commands are `make demo` and `make test`; both run scripts/setup.sh first (idempotent).
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test unit integration gpu-test lint proto bench clean-sandbox

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/bin/rlvr demo

test: setup lint
	$(PY) -m pytest -m "unit or integration or slow" $(PYTEST_ARGS)

unit: setup
	$(PY) -m pytest -m unit $(PYTEST_ARGS)

integration: setup
	$(PY) -m pytest -m "integration or slow" $(PYTEST_ARGS)

gpu-test: setup  # on a machine with a CUDA device (tests/gpu; skipped elsewhere)
	$(PY) -m pytest -m gpu $(PYTEST_ARGS)

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

proto:
	$(PY) -m rlvr.protogen

bench: setup
	$(PY) benchmarks/graders.py
	$(PY) benchmarks/rollout.py
	$(PY) benchmarks/grpo.py
