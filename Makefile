PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck install clean bench browser lock promtool image

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

# The alert rules' tests run Debian's promtool (package prometheus); tests/ops fails without it.
PROMTOOL_STAMP := $(VENV)/.promtool
$(PROMTOOL_STAMP): $(STAMP)
	@if ! command -v promtool >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; fi; \
	fi
	touch $(PROMTOOL_STAMP)

promtool: $(PROMTOOL_STAMP)

run: $(STAMP)
	$(BIN)/petportrait serve

test: $(STAMP) $(BROWSER_STAMP) $(PROMTOOL_STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
