# nnlab: `make demo` runs the main job, `make test` the test suite.
# Both set up .venv first (idempotent: a stamp file skips pip when nothing changed).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The CPU wheel of torch 2.13.0 lies on these machines; installing it first keeps
# pip from pulling a multi-GB CUDA build for the unpinned dependency.
TORCH_SPEC ?= torch==2.13.0

.PHONY: venv demo browser test lint format clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	# The optional extras (Optuna, Ray) are installed too, so their tests run.
	$(BIN)/python -m pip install --quiet -e ".[dev,tune,ray]"
	touch $(STAMP)

# Every experiment of the course report and ours, at the quick scale (<= 10 min on 2 CPU
# cores), then the report; ends with a summary table and the path of report.html. CIFAR-10
# is used when imported (nnlab data cifar10 --archive PATH) or given: make demo CIFAR10=PATH;
# otherwise one download is tried (md5-checked, short timeout) and, offline, the demo goes on
# without it.
CIFAR10 ?=
demo: venv
	$(BIN)/nnlab reproduce --quick --out runs/demo --download-cifar10 $(if $(CIFAR10),--cifar10 $(CIFAR10))

# The browser test (tests/test_browser.py) renders report.html in Debian's chromium;
# install it where missing (CI runs as root). Without it the test skips locally, fails in CI.
browser:
	command -v chromium >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| echo "chromium could not be installed: tests/test_browser.py will skip (and fail under CI=true)"

test: venv browser
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/python -m pytest -q

lint: venv
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

format: venv
	$(BIN)/ruff format src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info .pytest_cache
