# Quick start: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit clean help

help:
	@echo "make demo   - create .venv if missing, run the whole pipeline on a month of synthetic traffic"
	@echo "make test   - install what the tests need, run ruff, mypy and the whole test suite"
	@echo "make clean  - remove .venv and the demo data folder (.chargeback)"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,functions]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/chargeback demo

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

clean:
	rm -rf $(VENV) .chargeback
