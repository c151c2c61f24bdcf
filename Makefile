PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast test-random mutate lint typecheck install clean bench browser lock promtool image debian-base wheels

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

# Workers with a skewed clock (tests/jobs/test_skewed_workers.py) run under Debian's libfaketime.
FAKETIME_STAMP := $(VENV)/.faketime
$(FAKETIME_STAMP): $(STAMP)
	@if ! ls /usr/lib/*/faketime/libfaketime.so.1 >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime >/dev/null; \
	  else sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends faketime >/dev/null; fi; \
	fi
	touch $(FAKETIME_STAMP)

run: $(STAMP)
	$(BIN)/petportrait serve

test: $(STAMP) $(BROWSER_STAMP) $(PROMTOOL_STAMP) $(FAKETIME_STAMP)
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

# --- the OCI image (Containerfile) -----------------------------------------------------------------------
# `make image` builds petportrait:latest with podman, else docker. When the base image cannot be pulled (no
# registry reachable), a base is built from Debian's packages with mmdebstrap and imported. When .wheels/
# holds wheels (`make wheels`, from this machine's package index and pip settings), the build installs from
# them alone; otherwise pip inside the build uses the public indexes.
IMAGE ?= petportrait:latest
ENGINE ?= $(shell command -v podman 2>/dev/null || command -v docker 2>/dev/null)
BASE ?= docker.io/library/python:3.11-slim-bookworm
DEBIAN_BASE ?= localhost/petportrait-base:bookworm
DEBIAN_SUITE ?= bookworm
# podman's default OCI format has no HEALTHCHECK: build in docker's format so that the health check stays
BUILD_FLAGS ?= $(if $(findstring podman,$(notdir $(ENGINE))),--format docker)

image:
	@test -n "$(ENGINE)" || { echo "neither podman nor docker found"; exit 1; }
	mkdir -p .wheels
	@base="$(BASE)"; \
	if ! $(ENGINE) image inspect "$$base" >/dev/null 2>&1 && ! timeout 120 $(ENGINE) pull -q "$$base" >/dev/null 2>&1; then \
	  echo "cannot pull $$base: using a base built from Debian's packages ($(DEBIAN_BASE))"; \
	  $(MAKE) --no-print-directory debian-base; base="$(DEBIAN_BASE)"; \
	fi; \
	echo "$(ENGINE) build --build-arg BASE=$$base -t $(IMAGE) ."; \
	$(ENGINE) build $(BUILD_FLAGS) --build-arg BASE="$$base" -f Containerfile -t $(IMAGE) .

debian-base:
	@test -n "$(ENGINE)" || { echo "neither podman nor docker found"; exit 1; }
	@if ! $(ENGINE) image inspect $(DEBIAN_BASE) >/dev/null 2>&1; then \
	  command -v mmdebstrap >/dev/null || { echo "mmdebstrap not found: apt-get install mmdebstrap"; exit 1; }; \
	  mmdebstrap --quiet --variant=apt --include=python3,python3-venv,ca-certificates,libgomp1,tzdata \
	    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
	    --dpkgopt='path-exclude=/usr/share/locale/*' $(DEBIAN_SUITE) - \
	  | $(ENGINE) import --change 'CMD ["python3"]' - $(DEBIAN_BASE); \
	fi

wheels: $(STAMP)
	# async-timeout: redis needs it below Python 3.11.3 (Debian bookworm's python3), whatever this machine runs
	$(BIN)/python -m pip wheel -q -w .wheels -c constraints.txt "$(TORCH)" ".[postgres,s3]" setuptools wheel \
	  "async-timeout>=4.0.3"
	rm -f .wheels/petportrait-*.whl
