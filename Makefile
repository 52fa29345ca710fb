# The two commands of the README:
#   make book   prepare the offline data, run every chapter under the `cpu` profile,
#               render the book to _build/html/index.html
#   make test   the whole test suite, exactly as CI runs it (.ci/run calls this)
# Both create (or reuse) the virtual environment .venv inside the checkout.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
PROFILE ?= cpu
DEVICE ?= cpu
DATA   ?= data
# Quiet pip, minus this machine's harmless "Location ... is ignored" notes about local indexes.
PIP_FILTER := 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true

.PHONY: help setup book data chapters html test lint reproduce clean browser-deps lab

help:
	@echo "make book       data + chapters (PROFILE=$(PROFILE)) + HTML book in _build/html"
	@echo "make test       the full test suite, as CI runs it"
	@echo "make reproduce  PROFILE=paper DEVICE=cuda DATA=/path [MAX_STEPS=2]: all training chapters"
	@echo "make lab        install JupyterLab into $(VENV) and start it at the repository"
	@echo "make lint       ruff check + format check"
	@echo "make clean      remove the built book and the jupyter cache"
	@echo "make browser-deps  install Debian's Chromium for the browser test (root)"

$(STAMP): pyproject.toml
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing the project into $(VENV) (first time: several minutes)"
	@set -o pipefail; $(VPY) -m pip install -q --upgrade pip $(PIP_FILTER)
	@set -o pipefail; $(VPY) -m pip install -q -e ".[book,test,bench]" $(PIP_FILTER)
	$(VPY) -c "import torch, torchvision, mopoe_lib; print('[setup] torch', torch.__version__, 'torchvision', torchvision.__version__)"
	$(VPY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	@touch $(STAMP)

setup: $(STAMP)

data: $(STAMP)
	$(VPY) -m data_prep all --root $(DATA)

chapters: $(STAMP)
	$(VPY) -m mopoe_lib.chapters --profile $(PROFILE) --device $(DEVICE) --data-root $(abspath $(DATA))

# Jupyter Book starts the theory chapters' kernels itself (on 127.0.0.1) and has no setting
# for the CurveZMQ keys the chapter runner provisions, so ipykernel's "running over TCP
# without encryption" line, once per chapter, is dropped from its log; the exit status stays.
KERNEL_TCP_FILTER := 2>&1 | grep -v "Kernel is running over TCP without encryption"

html: $(STAMP)
	@echo "[book] jupyter-book build . --path-output . -n --keep-going"
	@set -o pipefail; $(VENV)/bin/jupyter-book build . --path-output . -n --keep-going $(KERNEL_TCP_FILTER)
	@echo "[book] open _build/html/index.html"

book: data chapters html

# Leave it running: interrupted, it resumes where it stopped (finished chapters are reused,
# finished models reloaded, an interrupted model continues from its last checkpoint).
# MAX_STEPS=2: every run bounded to 2 updates and a small evaluation, a check of the whole
# path before the GPU hours (never a reproduction), executed into runs/ rather than over
# the book's chapters.
MAX_STEPS ?=
reproduce: $(STAMP)
	$(VPY) -m mopoe_lib.chapters --profile $(PROFILE) --device $(DEVICE) --data-root $(abspath $(DATA)) $(if $(MAX_STEPS),--max-steps $(MAX_STEPS) --out-dir runs/executed-max-steps-$(MAX_STEPS))

LAB_STAMP := $(VENV)/.lab-installed
$(LAB_STAMP): $(STAMP) pyproject.toml
	@echo "[lab] installing JupyterLab into $(VENV)"
	@set -o pipefail; $(VPY) -m pip install -q -e ".[book,test,bench,lab]" $(PIP_FILTER)
	@touch $(LAB_STAMP)

# JupyterLab at the repository root, with the project's kernel (python3 of .venv)
lab: $(LAB_STAMP)
	$(VENV)/bin/jupyter lab --ServerApp.root_dir=. $(if $(filter 0,$(shell id -u)),--allow-root)

test: $(STAMP) browser-deps
	$(VPY) -m pytest --nbval -ra

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

browser-deps:
	bash .ci/install-browser.sh

clean:
	rm -rf _build .jupyter_cache
