# make run DATA=path/to/fer2013   set up, then train on DATA and write its report
# make test                       set up, then run the test suite
VENV ?= .venv
PYTHON ?= python3
DATA ?=
MODEL ?= cnn3_bn
EPOCHS ?= 30
STAMP := $(shell date +%Y%m%d-%H%M%S)
RUN ?= runs/$(MODEL)-$(STAMP)
BIN := $(VENV)/bin

.PHONY: setup run test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@

run: setup
	@test -n "$(DATA)" || { echo "usage: make run DATA=path/to/dataset [MODEL=cnn3_bn EPOCHS=30]"; exit 2; }
	$(BIN)/ferlab train --data "$(DATA)" --model $(MODEL) --epochs $(EPOCHS) --out "$(RUN)"
	$(BIN)/ferlab report "$(RUN)" --data "$(DATA)"

test: setup
	$(BIN)/python -m pytest
