# The two set-up commands of the README: `make demo` and `make test`. Each creates .venv and
# installs what it needs into it, so either works first on a fresh machine: the demo the project
# (editable) and its runtime dependencies; the tests also the test, lint and export-format tools
# (onnx, onnxruntime, LiteRT, pytest, ruff: about 300 MB the demo never imports).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-torch test-nightly lint format clean-venv

$(VENV)/.installed: pyproject.toml requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.installed requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# torch and torchvision for the torchvision exactness test only (tests/test_converters.py); the
# package itself never imports them. PyPI's Linux torch wheel brings torch's CUDA libraries
# (about 5 GB, PyPI has no CPU-only build), so `make test` leaves them out and skips that test,
# saying so; `make test-torch` (CI) installs them and requires the test to run. Pinned: the
# versions that test was run with.
TORCH := torch==2.14.1 torchvision==0.29.1
$(VENV)/.torch: $(VENV)/.dev
	$(PY) -m pip install --quiet $(TORCH)
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/keras-googlenet demo

test: $(VENV)/.dev
	$(PY) -m pytest -n 2 --dist loadgroup

test-torch: $(VENV)/.dev $(VENV)/.torch
	KERAS_GOOGLENET_REQUIRE_TORCH=1 $(PY) -m pytest -n 2 --dist loadgroup

# The suite on the next Keras before its release: keras-nightly in a venv of its own (it installs
# as the `keras` module, so it replaces the release there).
NIGHTLY := .venv-nightly
$(NIGHTLY)/.installed: pyproject.toml requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(NIGHTLY)
	$(NIGHTLY)/bin/python -m pip install --quiet --upgrade pip
	$(NIGHTLY)/bin/python -m pip install --quiet -e '.[test]'
	$(NIGHTLY)/bin/python -m pip uninstall --quiet --yes keras
	$(NIGHTLY)/bin/python -m pip install --quiet --pre keras-nightly
	touch $@

# NIGHTLY_TESTS: which tests (default: all).
NIGHTLY_TESTS ?= tests
test-nightly: $(NIGHTLY)/.installed
	$(NIGHTLY)/bin/python -c "import keras; print('keras', keras.__version__)"
	$(NIGHTLY)/bin/python -m pytest -n 2 --dist loadgroup $(NIGHTLY_TESTS)

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(VENV)/.dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean-venv:
	rm -rf $(VENV)
