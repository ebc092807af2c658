# make demo: set up everything on a fresh machine and run the showcase.
# make test: install the test dependencies and run the suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
FMNIST := /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz
# CPU build of torch; on a machine whose pip finds no such file this installs the PyPI build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install install-test data demo test clean

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

clean:
	rm -rf $(VENV) runs .pytest_cache *.egg-info
