# Each target creates or refreshes the virtual environment it needs (keyed by a hash of setup.cfg and this file).
VENV ?= .venv
# Where the torch wheel comes from: empty = pip's own index (here a local CPU wheel answers torch==2.13.0; on plain
# PyPI the same pin is the multi-GB CUDA build on Linux x86_64). The CPU build from PyTorch's own index:
#   make install TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL ?=
PYTHON ?= python3
PY := $(VENV)/bin/python
INSTALL_KEY := $(shell cat setup.cfg Makefile | sha1sum | cut -c1-12)
STAMP := $(VENV)/.installed-$(INSTALL_KEY)

.PHONY: install test-envs anatomy-templates sweep-anatomy demo test generate clean device-wheels device-check

$(STAMP):
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch pinned; which build (CPU or CUDA) depends on the index: TORCH_INDEX_URL above
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL))
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

install: $(STAMP)

# The environments some tests run in (MONAI Label; Python 3.6 for the Jetson Nano runner), cached outside the clone
# and keyed by their pins (tests/envs.py); where one cannot be made here, the tests that need it skip with the reason
test-envs: anatomy-templates
	$(PYTHON) tests/envs.py

# Real MR anatomy for the tests and the sweep (Colin27 + AAL, Debian's mricron-data): installed with apt-get where this
# runs as root with apt; elsewhere one line says why, and the anatomy tests skip with the same reason
TEMPLATES := /usr/share/mricron/templates/aal.nii.gz
anatomy-templates:
	@test -f $(TEMPLATES) \
	  || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
	       && { apt-get install -y -q mricron-data >/dev/null 2>&1 || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q mricron-data >/dev/null 2>&1; }; }; } \
	  || echo "anatomy templates not installed ($(TEMPLATES): needs 'apt-get install mricron-data' as root): the real-anatomy tests skip"

# The real-anatomy sweep of docs/results.md (about 25 min on 2 cores)
sweep-anatomy: install anatomy-templates
	$(PY) -m jnet sweep --dataset anatomy --work_dir sweep_anatomy --variants "[baseline,bilinear,head]" \
	  --resolutions "[16,32,64]" --single_seed_from 128 --reference False

demo: install
	$(PY) -m jnet demo --work_dir demo_output

# The suite in TEST_WORKERS processes (pytest-xdist; each test module stays in one process, so its module fixtures -
# a MONAI Label server, a torchrun training - are built once; session fixtures once per process): 23 min in one
# process on 2 cores, 16 min in two
TEST_WORKERS ?= 2
test: install test-envs
	$(PY) -m pytest -q -rs -n $(TEST_WORKERS) --dist loadscope tests

generate: install
	$(PY) -m jnet generate

# The GPU device check (issue 19), for a CUDA machine with PyTorch and no internet. Here: the wheels of the packages
# such a machine lacks (monai, nibabel, pytorch-ignite, fire, termcolor; pure Python, 5.2 MiB) into .device/wheels.
# There, from the repository root with .device carried along: install them beside the machine's own PyTorch and run
# the check (out: $$OUT, else device_check_output/).
DEVICE_DIR := .device
device-wheels: install
	$(PY) -m jnet device_check --wheels $(DEVICE_DIR)/wheels

device-check:
	python3 -m pip install --quiet --no-index --no-deps --target $(DEVICE_DIR)/site $(DEVICE_DIR)/wheels/*.whl
	PYTHONPATH=$(CURDIR)/$(DEVICE_DIR)/site:$(CURDIR) PYTHONUNBUFFERED=1 python3 -m jnet device_check --out_dir $${OUT:-device_check_output}

clean:
	rm -rf $(VENV) demo_output .pytest_cache
