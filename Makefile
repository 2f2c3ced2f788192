# `make test` is the test command of the README and of CI (.ci/run).
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
# A second environment with transformers 4.57, to prove that exported folders load there too.
TF4_ENV ?= .venv-tf4
TF4_PYTHON := $(TF4_ENV)/bin/python

.PHONY: test lint tf4-env

test: lint tf4-env
	KOSENTTYPE_TF4_PYTHON=$(abspath $(TF4_PYTHON)) $(PYTHON) -m pytest

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .

tf4-env: $(TF4_PYTHON)

$(TF4_PYTHON):
	python3 -m venv $(TF4_ENV)
	$(TF4_PYTHON) -m pip install -q torch==2.13.0 "transformers==4.57.*" safetensors
