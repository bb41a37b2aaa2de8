# Every target sets up .venv on first use; the stamps make later calls instant.
PY          := .venv/bin/python
PIP         := $(PY) -m pip install --disable-pip-version-check -q
# `make demo` needs the package alone; `make test` every extra the tests exercise.
DEMO_STAMP  := .venv/.installed-demo
TEST_STAMP  := .venv/.installed-test
TEST_EXTRAS := dev,tensorboard,ray,triton,examples,pandas,optuna,peers
# The torch wheel's index. Empty: pip's default index (the CPU wheel on this project's
# machines; on a stock Linux machine a CUDA build of several GB). For the CPU wheel
# from PyTorch's own index: TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu make demo
TORCH_INDEX_URL ?=
TORCH_PIN   := torch==2.13.0

.PHONY: setup demo test bench gpu lint clean

setup: $(DEMO_STAMP)

.venv/.torch:
	test -x $(PY) || python3 -m venv .venv
	# torch first, pinned: a bare `torch` requirement could pull another build.
	$(PIP) $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) $(TORCH_PIN)
	touch $@

$(DEMO_STAMP): pyproject.toml .venv/.torch
	$(PIP) -e .
	touch $@

$(TEST_STAMP): pyproject.toml .venv/.torch
	$(PIP) -e '.[$(TEST_EXTRAS)]'
	touch $@

demo: $(DEMO_STAMP)
	$(PY) -m optimlab compare

test: $(TEST_STAMP)
	$(PY) -m pytest -q

bench: $(TEST_STAMP)
	$(PY) -m optimlab bench --json bench.json
	$(PY) -m optimlab sweep-bench --json bench-sweep.json
	$(PY) -m optimlab sweep-bench --store 500 --repeats 3 --json bench-store.json
	$(PY) -m optimlab sweep-bench --fixed-costs --repeats 3 --json bench-fixed.json
	$(PY) -m optimlab sweep-bench --report --repeats 3 --json bench-report.json

# On a machine with a CUDA GPU (and torch's CUDA build): the Triton kernels compiled and
# tested there, then the CUDA benchmark (docs/gpu.md).
gpu: $(TEST_STAMP)
	$(PY) -m pytest -q tests/test_triton_cuda.py
	$(PY) -m optimlab bench --device cuda --json bench-cuda.json

lint: $(TEST_STAMP)
	$(PY) -m ruff check src tests
	$(PY) -m mypy src

clean:
	rm -rf .venv build *.egg-info src/*.egg-info .pytest_cache .hypothesis
