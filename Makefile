# Every target sets up .venv on first use; the stamp makes later calls instant.
PY      := .venv/bin/python
STAMP   := .venv/.installed

.PHONY: setup demo test bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	# The CPU wheel first: a bare `torch` requirement would pull a CUDA build.
	$(PY) -m pip install --disable-pip-version-check -q torch==2.13.0
	$(PY) -m pip install --disable-pip-version-check -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m optimlab compare

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) -m optimlab bench --json bench.json
	$(PY) -m optimlab sweep-bench --json bench-sweep.json

lint: $(STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy src

clean:
	rm -rf .venv build *.egg-info src/*.egg-info .pytest_cache .hypothesis
