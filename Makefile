PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-random mutate lint typecheck install clean bench browser lock

TORCH := torch==2.13.0

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "$(PYTHON) not found: set PYTHON=python3.x (3.11 or newer)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, so that nothing pulls a CUDA build
	$(BIN)/python -m pip install -q -c constraints.txt "$(TORCH)"
	# every other dependency at the version constraints.txt pins (make lock refreshes it)
	$(BIN)/python -m pip install -q -c constraints.txt -e ".[postgres,s3,dev]"
	touch $(STAMP)

install: $(STAMP)

# Refresh constraints.txt from pyproject.toml: pip-compile keeps the pins it can and adds what is new;
# `make lock UPGRADE=1` moves everything to the newest release. torch stays the CPU build, pinned above.
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	test -x $(BIN)/pip-compile || $(BIN)/python -m pip install -q "pip-tools>=7.4"
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --all-extras --strip-extras \
	  --no-emit-index-url --no-emit-find-links --no-emit-trusted-host $(if $(UPGRADE),--upgrade) \
	  --upgrade-package "$(TORCH)" --output-file constraints.txt pyproject.toml
	sed -i -E 's/^(torch==[0-9.]+)\+[a-z0-9]+$$/\1/' constraints.txt

# Browser tests drive Debian's Chromium (Playwright's own browser download cannot work offline).
BROWSER_STAMP := $(VENV)/.browser
$(BROWSER_STAMP): $(STAMP)
	@if [ ! -x /usr/bin/chromium ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null; fi; \
	fi
	touch $(BROWSER_STAMP)

browser: $(BROWSER_STAMP)

run: $(STAMP)
	$(BIN)/petportrait serve

test: $(STAMP) $(BROWSER_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q --strict-skips --durations=15

# The quick tier: everything but the tests marked slow (tests/tiers.py names them).
test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

# The suite in a random order (pytest-random-order; SEED=n repeats an order). TESTS narrows it.
test-random: $(STAMP)
	$(BIN)/python -m pytest -q --random-order-bucket=global \
	  $(if $(SEED),--random-order-seed=$(SEED)) $(TESTS)

# Mutation testing of the policy-critical modules ([tool.mutmut] in pyproject.toml), each mutant against the
# tests that cover it; prints the kill rate. Slow: not part of make test.
mutate: $(STAMP)
	$(BIN)/python bench/mutate.py

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
