# make test   set up .venv, build the Cython core, run every test on both backends
# make bench  the same set-up, then the side-by-side benchmark against the peers

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

export PRODFAST_REQUIRE_EXTENSION = 1

.PHONY: venv build test test-py lint bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet "setuptools>=77" "Cython>=3.1,<4" wheel
	$(PY) -m pip install --quiet --no-build-isolation -e ".[test,bench,redis,prometheus,langchain]"
	touch $@

# Rebuilds the extension in place whenever a .pyx/.pxd/.pxi changed.
build: $(STAMP)
	$(PY) setup.py --quiet build_ext --inplace

test: build
	bash scripts/ensure-redis.sh
	$(PY) -m pytest -q
	$(PY) -m pytest -q bench --benchmark-disable
	PRODFAST_PURE_PYTHON=1 $(PY) -m pytest -q --no-cython
	$(MAKE) lint

lint: $(STAMP)
	$(PY) -m ruff check src tests bench conftest.py setup.py

bench: build
	$(PY) -m pytest bench --benchmark-only --benchmark-group-by=group,param:n --benchmark-columns=median,iqr,rounds

clean:
	rm -rf build $(VENV) src/prodfast/*.c src/prodfast/*.so src/prodfast/*.html .pytest_cache .benchmarks
