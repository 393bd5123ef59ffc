# Every target bootstraps .venv itself, so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
EXTRAS := test,docs,bench
# A second environment with a real Evennia and a migrated game, for the tests that play the
# howtos on it (tests/evennia/). Test-only: evasync never imports Evennia.
EVENNIA_VENV  := .venv-evennia
EVENNIA_STAMP := $(EVENNIA_VENV)/.installed-stamp

.PHONY: html test doctest unit bench serve clean evennia

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $(STAMP)

$(EVENNIA_STAMP): tests/evennia/requirements.txt
	$(PYTHON) -m venv --clear $(EVENNIA_VENV)
	$(EVENNIA_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(EVENNIA_VENV)/bin/python -m pip install --quiet -r tests/evennia/requirements.txt
	cd $(EVENNIA_VENV) && bin/evennia --init game >/dev/null
	cd $(EVENNIA_VENV)/game && ../bin/evennia migrate >/dev/null
	touch $(EVENNIA_STAMP)

evennia: $(EVENNIA_STAMP)

html: $(STAMP)
	$(BIN)/sphinx-build -W --keep-going -q -b html -c . docs _build/html
	@echo "site built: _build/html/index.html"

test: $(STAMP) $(EVENNIA_STAMP)
	$(BIN)/python -m pytest

unit: $(STAMP) $(EVENNIA_STAMP)
	$(BIN)/python -m pytest tests

doctest: $(STAMP) $(EVENNIA_STAMP)   # the pages' examples and transcripts (on Evennia too), and evasync's docstrings
	$(BIN)/python -m pytest docs evasync

bench: $(STAMP)
	$(BIN)/python -m bench

serve: $(STAMP)
	$(BIN)/evasync start --foreground

clean:
	rm -rf _build
