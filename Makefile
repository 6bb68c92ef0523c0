# nnlab: `make demo` runs the main job, `make test` the test suite.
# Both set up .venv first (idempotent: a stamp file skips pip when nothing changed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch 2.13.0 lies on these machines; installing it first keeps
# pip from pulling a multi-GB CUDA build for the unpinned dependency.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo test lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: venv
	$(BIN)/nnlab train moons --seeds 3 --out runs/demo-moons

test: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: venv
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
