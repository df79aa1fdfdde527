# Each target creates or refreshes the virtual environment it needs (keyed by a hash of setup.cfg and this file).
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALL_KEY := $(shell cat setup.cfg Makefile | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(INSTALL_KEY)

.PHONY: install monailabel-env demo test generate clean

$(STAMP):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# CPU wheel pinned: a plain `torch` would pull a multi-GB CUDA build
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(STAMP)

# MONAI Label's own environment (tests/test_monailabel.py), cached outside the clone and keyed by its pins
# (tests/monailabel_requirements.txt); without network it is skipped, and so is that test
monailabel-env:
	$(PYTHON) tests/monailabel_env.py

demo: install
	$(PY) -m jnet demo --work_dir demo_output

test: install monailabel-env
	$(PY) -m pytest -q tests

generate: install
	$(PY) -m jnet generate

clean:
	rm -rf $(VENV) demo_output .pytest_cache
