# The two commands of the README. Each sets up .venv on first use (and again when pyproject.toml
# changes), installing only what it needs, then runs its job.
#   make demo   the main job: per-sample Jacobians of built-in torch models, checked against torch.autograd
#   make test   ruff check . and python -m pytest (what CI runs, through .ci/run)

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test docs

demo: $(VENV)/.installed-demo
	$(BIN)/dualjac demo

test: $(VENV)/.installed-test
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

docs: $(VENV)/.installed-test  # the site in site/, as the tests build it
	$(BIN)/python -m mkdocs build --strict

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# numpy and torch: the demo lowers torch models (the same pinned torch as the tests: an open range
# would fetch the newest release, several GB with its CUDA libraries)
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "torch==2.13.0" -e ".[torch]"
	touch $@

# torch pinned for the tests (the package itself takes torch>=2.6); the test extra (pytest, ruff,
# scipy, dask, ...), docs (the strict site build is a test) and plot (the CLI's --plot test)
$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "torch==2.13.0" -e ".[test,docs,plot]"
	touch $@
