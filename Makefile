# make demo: set up everything on a fresh machine and run the showcase.
# make test: install the test dependencies and run the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# CPU build of torch; on a machine whose pip finds no such file this installs the PyPI build.
TORCH_SPEC ?= torch==2.13.0

# Optional: IBM aihwkit 1.2.0 (CPU wheels for Python 3.12) in its own venv, for `onchip-ff crosscheck aihwkit`.
PY312 ?= $(firstword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3.12) $(shell command -v python3.12))
AIHWKIT_VENV ?= .venv-aihwkit

.PHONY: install install-test data demo test clean aihwkit-venv crosscheck

$(PY):
	python3 -m venv $(VENV)

$(VENV)/.torch: | $(PY)
	$(PY) -c "import torch" 2>/dev/null || $(PIP) install -q "$(TORCH_SPEC)"
	touch $@

install: $(VENV)/.torch
	$(PIP) install -q -e .

install-test: $(VENV)/.torch
	$(PIP) install -q -e '.[test]'

data:
	@if [ -f "$(FMNIST)" ]; then echo "Fashion-MNIST found in /usr/share/datasets/fashion-mnist"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist; \
	else echo "Fashion-MNIST is missing: run 'sudo apt-get install dataset-fashion-mnist'," \
	  "or set data.root to a folder with the raw IDX files"; exit 1; fi

demo: install data
	$(VENV)/bin/onchip-ff demo

test: install-test
	$(PY) -m pytest -q
	NUMBA_DISABLE_JIT=1 $(PY) -m pytest -q -m jitfree

$(AIHWKIT_VENV)/bin/python:
	@test -n "$(PY312)" || { echo "Python 3.12 not found: install it (pyenv install 3.12) or pass PY312=/path/to/python3.12"; exit 1; }
	$(PY312) -m venv $(AIHWKIT_VENV)
	$(AIHWKIT_VENV)/bin/pip install -q aihwkit==1.2.0

aihwkit-venv: $(AIHWKIT_VENV)/bin/python

crosscheck: install aihwkit-venv
	$(VENV)/bin/onchip-ff crosscheck aihwkit --python $(AIHWKIT_VENV)/bin/python --out runs/crosscheck

clean:
	rm -rf $(VENV) $(AIHWKIT_VENV) runs .pytest_cache *.egg-info
