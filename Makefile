# make test   set up .venv, build the Cython core, run every test on both backends
# make bench  the same set-up, then the side-by-side benchmark against the peers

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export PRODFAST_REQUIRE_EXTENSION = 1

# pytest workers for the suite (pytest-xdist); each test file stays in one worker
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile

BENCH_ARGS ?=
BENCH_DIR  ?= bench-results
PORTABLE   := build/portable-clock

# aiolimiter's own test suite, from its sdist (the only release whose sdist ships its tests),
# run against prodfast.AsyncLimiter through tests/aiolimiter_shim
AIOLIMITER_VERSION ?= 1.3.0
AIOLIMITER_DIR     ?= build/aiolimiter-suite
AIOLIMITER_TESTS   := $(AIOLIMITER_DIR)/aiolimiter-$(AIOLIMITER_VERSION)/tests/test_aiolimiter.py

.PHONY: venv build test test-portable-clock aiolimiter-suite cachetools-suite lint bench bench-pytest clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "setuptools>=77" "Cython>=3.1,<4" wheel
	$(PY) -m pip install --quiet --no-build-isolation -e ".[test,bench,redis,prometheus,langchain,otel]"
	touch $@

# Rebuilds the extension in place whenever a .pyx/.pxd/.pxi changed.
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

test: build
	bash scripts/ensure-redis.sh
	$(PY) -m pytest -q $(XDIST)
	$(PY) -m pytest -q bench --benchmark-disable
	PRODFAST_PURE_PYTHON=1 $(PY) -m pytest -q $(XDIST) --no-cython
	$(MAKE) test-portable-clock
	$(MAKE) aiolimiter-suite
	$(MAKE) cachetools-suite
	$(MAKE) lint

# The core as macOS and Windows compile it (no coarse clock; src/prodfast/_platform.h), built out
# of tree into $(PORTABLE) so the in-place build stays as it is (at -O1: a third of the compile
# time), under every [cy] case of the suite. The packaging and cimport tests build modules of
# their own, so they are left out.
test-portable-clock: build
	PRODFAST_PORTABLE_CLOCK=1 PRODFAST_QUICK_BUILD=1 $(PY) setup.py --quiet build --build-base $(PORTABLE) --build-lib $(PORTABLE)/lib
	PYTHONPATH=$(PORTABLE)/lib $(PY) -c "import prodfast._core as c, sys; sys.exit(0 if '$(PORTABLE)/lib/' in c.__file__ else f'not the portable build: {c.__file__}')"
	PYTHONPATH=$(PORTABLE)/lib $(PY) -m pytest -q $(XDIST) -p no:cacheprovider -m cython_backend \
		--ignore=tests/test_wheel.py --ignore=tests/test_cimport.py

$(AIOLIMITER_TESTS): $(STAMP)
	mkdir -p $(AIOLIMITER_DIR)
	$(PY) -m pip download --quiet --no-deps --no-binary :all: aiolimiter==$(AIOLIMITER_VERSION) -d $(AIOLIMITER_DIR)
	tar -xzf $(AIOLIMITER_DIR)/aiolimiter-$(AIOLIMITER_VERSION).tar.gz -C $(AIOLIMITER_DIR) aiolimiter-$(AIOLIMITER_VERSION)/tests
	touch $@

# test_version checks aiolimiter's packaging (its version against its git tags), not the limiter
aiolimiter-suite: build $(AIOLIMITER_TESTS)
	PYTHONPATH=tests/aiolimiter_shim $(PY) -m pytest -q -p no:cacheprovider -p no:randomly \
		--rootdir=$(AIOLIMITER_DIR) -c /dev/null -o asyncio_mode=auto \
		-k "not test_version" $(AIOLIMITER_TESTS)

# cachetools' own test suite (every file of its sdist's tests/), fetched from the package
# registry at the version and hash pinned in tests/cachetools_suite/requirements.txt, run with
# `cachetools` replaced by prodfast.compat.cachetools: once on the compiled core, once on the twin.
CACHETOOLS_REQ   := tests/cachetools_suite/requirements.txt
CACHETOOLS_CACHE := build/cachetools-suite
# PRODFAST_EXPECT_BACKEND makes the shim refuse to run on any other backend than the one meant.
CACHETOOLS_PYTEST = PYTHONPATH=$(CURDIR)/tests/cachetools_suite $(CURDIR)/$(PY) -m pytest -q -p shim -p no:cacheprovider tests

$(CACHETOOLS_CACHE)/.fetched: $(CACHETOOLS_REQ) $(STAMP)
	rm -rf $(CACHETOOLS_CACHE) && mkdir -p $(CACHETOOLS_CACHE)
	$(PY) -m pip download --quiet --no-deps --no-binary :all: --require-hashes -r $(CACHETOOLS_REQ) -d $(CACHETOOLS_CACHE)
	mkdir $(CACHETOOLS_CACHE)/sdist
	tar -xzf $(CACHETOOLS_CACHE)/cachetools-*.tar.gz -C $(CACHETOOLS_CACHE)/sdist --strip-components=1
	touch $@

cachetools-suite: build $(CACHETOOLS_CACHE)/.fetched
	cd $(CACHETOOLS_CACHE)/sdist && PRODFAST_EXPECT_BACKEND=cython $(CACHETOOLS_PYTEST)
	cd $(CACHETOOLS_CACHE)/sdist && PRODFAST_EXPECT_BACKEND=python PRODFAST_PURE_PYTHON=1 $(CACHETOOLS_PYTEST)

lint: build
	$(PY) -m ruff check src tests bench conftest.py setup.py
	MYPYPATH=src $(PY) -m mypy.stubtest prodfast._core --allowlist tests/stubtest-allowlist.txt --ignore-unused-allowlist

# The side-by-side report: every area (caches, decorators, limiters, redis-limiters,
# shared-caches, stats, monitoring), both backends and the installed peers, interleaved in one
# process; tables on stdout, JSON and PNG charts in $(BENCH_DIR) (it says where). The Redis areas
# start their own redis-server (ensure-redis.sh installs one where it can; without one they are
# skipped with a note). `make bench BENCH_ARGS=--quick`, `BENCH_ARGS="--area shared-caches"`
bench: build
	bash scripts/ensure-redis.sh
	$(PY) -m prodfast.bench --json $(BENCH_DIR)/results.json --plot-dir $(BENCH_DIR) $(BENCH_ARGS)

# The same cases under pytest-benchmark (bench/ wraps prodfast.bench; the quick preset unless
# PRODFAST_BENCH_PRESET=full). `make bench-pytest BENCH_PYTEST_ARGS="-k shared"`
BENCH_PYTEST_ARGS ?=
bench-pytest: build
	bash scripts/ensure-redis.sh
	$(PY) -m pytest bench --benchmark-only --benchmark-group-by=group --benchmark-columns=median,iqr,rounds $(BENCH_PYTEST_ARGS)

clean:
	rm -rf build dist $(BENCH_DIR) $(VENV) src/prodfast/*.c src/prodfast/*.so src/prodfast/*.html .pytest_cache .benchmarks
