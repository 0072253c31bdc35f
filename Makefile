# make serve                      set up, then the web app on the bundled `fast` model: http://127.0.0.1:7860
# make test                       set up, then run the test suite
# make run DATA=path/to/fer2013   set up, then train on DATA and write its report
# make reference NAME=fast DATA=fer2013-train-val.zip   retrain a bundled model's recipe (fast or accurate)
VENV ?= .venv
PYTHON ?= python3
DATA ?=
MODEL ?= cnn3_bn
EPOCHS ?= 30
STAMP := $(shell date +%Y%m%d-%H%M%S)
RUN ?= runs/$(MODEL)-$(STAMP)
BIN := $(VENV)/bin

.PHONY: setup serve run reference test

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev,serve]"
	touch $@

serve: setup
	$(BIN)/ferlab serve --model $(or $(NAME),fast)

run: setup
	@test -n "$(DATA)" || { echo "usage: make run DATA=path/to/dataset [MODEL=cnn3_bn EPOCHS=30]"; exit 2; }
	$(BIN)/ferlab train --data "$(DATA)" --model $(MODEL) --epochs $(EPOCHS) --out "$(RUN)"
	$(BIN)/ferlab report "$(RUN)" --data "$(DATA)"

reference: setup
	@test -n "$(NAME)" -a -n "$(DATA)" || { echo "usage: make reference NAME=fast|accurate DATA=fer2013-train-val.zip"; exit 2; }
	$(BIN)/ferlab train --config configs/reference-$(NAME).yaml --data "$(DATA)" --out runs/reference-$(NAME)-$(STAMP)
	$(BIN)/ferlab report runs/reference-$(NAME)-$(STAMP) --data "$(DATA)"

test: setup
	$(BIN)/python -m pytest
