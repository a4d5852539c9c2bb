# Two commands matter on a fresh machine (see README): `make demo` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1

.PHONY: demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

## the main job: unlearning on the embedded default data, with a report
demo: $(STAMP)
	$(VENV)/bin/lightly-unlearn demo

## every test, the slow end-to-end ones included (what CI runs)
test: $(STAMP)
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check .

## unit tests only (a few seconds each)
test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) benchmarks/step_overhead.py
	$(PY) benchmarks/audit_cost.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache lightning_logs unlearn_demo_out
