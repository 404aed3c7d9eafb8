# The README's two commands are `make demo` and `make test`; each installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: setup system-deps demo test soak bench lint clean

setup: system-deps $(VENV)/.installed

# Debian's skopeo (the fallback copier) and docker-registry (CNCF distribution, the test bed).
system-deps:
	@if ! command -v skopeo >/dev/null || ! command -v docker-registry >/dev/null; then \
	  echo "installing skopeo and docker-registry (Debian packages)"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq skopeo docker-registry >/dev/null; \
	fi

# The example provider that lives outside the package (docs/providers.md) goes in after
# mirrorspec, through its own entry point, as a third-party provider would.
EXAMPLE_PROVIDER := tests/plugins/indexed_registry

$(VENV)/.installed: pyproject.toml $(EXAMPLE_PROVIDER)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -e '.[test]'
	$(BIN)/pip install -q --disable-pip-version-check -e $(EXAMPLE_PROVIDER)
	touch $@

demo: setup
	$(BIN)/python scripts/demo.py

# Two workers, one module per worker at a time (module-scoped beds stay in one process):
# most tests wait on registries, skopeo and terraform, so two cores run two modules at once.
# The 15 slowest tests are listed at the end: the suite has a 12-minute budget in CI.
test: setup lint
	$(BIN)/pytest -n 2 --dist loadfile --durations=15

# Fault injection over many more seeds and rates than `make test` runs (README, Reliability).
soak: setup
	$(BIN)/pytest -m soak

# Side by side with skopeo sync on local registries behind a 20 ms proxy; rewrites bench/BENCHMARKS.md.
bench: setup
	$(BIN)/python bench/run.py

lint: $(VENV)/.installed
	$(BIN)/ruff check mirrorspec tests scripts bench
	$(BIN)/ruff format --check mirrorspec tests scripts bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache
