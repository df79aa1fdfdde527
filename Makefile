# Each target creates or refreshes the virtual environment it needs (keyed by a hash of setup.cfg and this file).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALL_KEY := $(shell cat setup.cfg Makefile | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(INSTALL_KEY)

.PHONY: install test-envs demo test generate clean

$(STAMP):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU wheel pinned: a plain `torch` would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(STAMP)

# The environments some tests run in (MONAI Label; Python 3.6 for the Jetson Nano runner), cached outside the clone
# and keyed by their pins (tests/envs.py); where one cannot be made here, the tests that need it skip with the reason
test-envs:
	$(PYTHON) tests/envs.py

demo: install
	$(PY) -m jnet demo --work_dir demo_output

test: install test-envs
	$(PY) -m pytest -q -rs tests

generate: install
	$(PY) -m jnet generate

clean:
	rm -rf $(VENV) demo_output .pytest_cache
