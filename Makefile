# Two commands set everything up on a fresh machine with Python 3.11 and pip:
#   make run   - install, start the bundled demo server on 127.0.0.1, download sample_urls.txt
#   make test  - install with test extras, check the types (mypy --strict), run the whole suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/python -m downloader.testing demo --list sample_urls.txt --dest downloads

test: $(VENV)/.installed-test
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

BENCH_ARGS ?= --repeat 3 --markdown bench/results/latest.md --readme README.md

bench: $(VENV)/.installed
	$(BIN)/python bench/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) downloads build *.egg-info
