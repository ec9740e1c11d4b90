# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
CONFIG ?= config/planner.example.yaml
# Offline BPE files for tiktoken when this checkout sits next to them (CI, this workplace).
ifneq ($(wildcard ../shared/tiktoken),)
export TIKTOKEN_CACHE_DIR ?= $(abspath ../shared/tiktoken)
endif

.PHONY: demo test lint venv bytecode clean

$(BIN)/planner: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

## planner's bytecode, as pip writes it for an installed package but not for this editable
## one: under PYTHONDONTWRITEBYTECODE=1 every command would otherwise compile all of planner on
## every start (~0.4 s of each `planner plan`). Only changed modules are compiled again.
bytecode: $(BIN)/planner
	$(BIN)/python -m compileall -q planner

venv: bytecode

## The main job on the embedded default: SQLite under ./state, the sandbox instead of the
## providers (no API key needed), the sample spool copied into ./state/spool the first time
## (cp -p keeps the files' times, so they are settled and the first plan shows them).
demo: venv
	@test -d state/spool || { mkdir -p state/spool && cp -p config/spool/*.jsonl state/spool/; }
	$(BIN)/planner plan -c $(CONFIG)
	$(BIN)/planner run --once --sandbox -c $(CONFIG)
	$(BIN)/planner status -c $(CONFIG)

## The whole test suite, then the linters and the type checker.
test: venv
	$(BIN)/pytest
	$(BIN)/ruff check planner tests bench
	$(BIN)/ruff format --check planner tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

clean:
	rm -rf $(VENV) state .pytest_cache .mypy_cache .ruff_cache
