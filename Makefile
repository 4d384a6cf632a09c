# Two commands set everything up on a fresh machine with only python3:
#   make demo   creates .venv if missing, then runs a tracked training on the embedded synthetic data
#   make test   creates .venv if missing, then runs ruff (lint, format check), the import layers
#               (lint-imports) and the whole test suite, the docs' strict build among its tests
#               (make bench-smoke: the benchmark scripts' quick runs)
PYTHON ?= python3
VENV := .venv
BIN := $(abspath $(VENV))/bin
STAMP := $(VENV)/.installed
# mlflow run / mlflow models serve exec `python` and `uvicorn` from PATH: use the venv's.
export PATH := $(BIN):$(PATH)
# mkdocs-material's notice about MkDocs 2, printed on every build
export NO_MKDOCS_2_WARNING := 1

.PHONY: venv demo test test-fast coverage bench-smoke docs clean
# One session, four workers on the two cores: a test often waits on a child process or a server,
# and another worker uses the core meanwhile (a test file's tests stay together on one worker: they
# share its trainings); the 15 slowest tests listed. Coverage is `make coverage`: tracing every line
# of the in-process tests makes them half as slow again.
PYTEST_ALL := -q -n 4 --dist loadfile -m "not bench" --durations=15

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/mlflow run . --env-manager local --experiment-name leukml \
		-P weights=none -P image_size=128 -P epochs=100
	@$(BIN)/python -m leukml.tracking.uri leukml  # last line: the runs in the UI's model-training view

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pytest $(PYTEST_ALL)

test-fast: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/pytest -q -n 4 --dist loadfile -m "not slow and not bench"

# the same session as `make test`'s, with leukml's branch coverage printed
coverage: $(STAMP)
	$(BIN)/pytest $(PYTEST_ALL) --cov=leukml --cov-branch --cov-report=term:skip-covered

bench-smoke: $(STAMP)
	$(BIN)/pytest -q -m bench

docs: $(STAMP)
	$(BIN)/mkdocs serve -a 127.0.0.1:8000

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
