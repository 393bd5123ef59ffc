# Every target bootstraps .venv itself, so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS := test,docs,bench

.PHONY: html test doctest unit bench serve clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

html: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html -c . docs _build/html
	@echo "site built: _build/html/index.html"

test: $(STAMP)
	$(BIN)/python -m pytest

unit: $(STAMP)
	$(BIN)/python -m pytest tests

doctest: $(STAMP)   # the pages' examples and transcripts, and those in evasync's docstrings
	$(BIN)/python -m pytest docs evasync

bench: $(STAMP)
	$(BIN)/python -m bench

serve: $(STAMP)
	$(BIN)/evasync start --foreground

clean:
	rm -rf _build
