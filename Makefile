# Two commands matter on a fresh machine (see README): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SITE ?= site
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export NO_MKDOCS_2_WARNING := 1

.PHONY: demo test test-fast lint docs docs-serve bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test,docs]"
	touch $(STAMP)

## the main job: unlearning on the embedded default data, with a report
demo: $(STAMP)
	$(VENV)/bin/lightly-unlearn demo

## every test, the slow end-to-end ones included, ruff and the docs build (what CI runs)
test: $(STAMP)
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mkdocs build --strict --quiet --site-dir $(SITE)

## unit tests only (a few seconds each)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

## the documentation site (docs/ -> site/), warnings are errors
docs: $(STAMP)
	$(VENV)/bin/mkdocs build --strict --site-dir $(SITE)

docs-serve: $(STAMP)
	$(VENV)/bin/mkdocs serve

bench: $(STAMP)
	$(PY) benchmarks/step_overhead.py
	$(PY) benchmarks/audit_cost.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache lightning_logs unlearn_demo_out $(SITE)
