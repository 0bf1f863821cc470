# cxr — one-command environment, tests, demo and benchmarks.
#   make setup   create .venv and install everything (idempotent; quick when nothing changed)
#   make test    setup + the test suite
#   make demo    setup + phantom data -> train -> evaluate (see README)
#   make bench   setup + benchmarks against the peers (see README)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.cxr-setup-stamp
PYTEST_ARGS ?=

.PHONY: setup test demo bench clean-venv

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt setup.py tools/install_detectron2.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --disable-pip-version-check -q -r requirements.txt -r requirements-dev.txt
	$(PY) tools/install_detectron2.py
	$(PIP) install --disable-pip-version-check -q --no-deps --no-build-isolation -e .
	$(PY) -c "import cxr, detectron2; assert detectron2.__version__ == '0.6'; print('cxr environment ready')"
	touch $(STAMP)

test: setup
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
