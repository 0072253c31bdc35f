# make serve                      set up the inference install with the web app (no torch), then the web app on
#                                 the bundled `fast` model: http://127.0.0.1:7860
# make test                       set up everything (training, serving, test tools), then run the default tests
# make test-slow                  the slow and browser tiers;  make lint  ruff
# make run DATA=path/to/fer2013   set up, then train on DATA and write its report
# make reference NAME=fast DATA=fer2013-train-val.zip   rebuild a bundled model (fast or accurate) from scratch,
#                                 every stage of configs/recipes/NAME.yaml into runs/reference/ (run it again to
#                                 carry on after an interruption), then its report
VENV ?= .venv
PYTHON ?= python3
DATA ?=
MODEL ?= cnn3_bn
EPOCHS ?= 30
STAMP := $(shell date +%Y%m%d-%H%M%S)
RUN ?= runs/$(MODEL)-$(STAMP)
REFERENCE ?= runs/reference
BIN := $(VENV)/bin

.PHONY: setup setup-serve serve run reference test test-slow lint

# Two installs: the web app needs only the core (ONNX Runtime) and the serve extra; training and tests need all.
setup: $(VENV)/.installed-all
setup-serve: $(VENV)/.installed-serve

$(VENV)/.installed-serve: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[serve]"
	touch $@

$(VENV)/.installed-all: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[all,dev]"
	touch $@ $(VENV)/.installed-serve

serve: setup-serve
	$(BIN)/ferlab serve --model $(or $(NAME),fast)

run: setup
	@test -n "$(DATA)" || { echo "usage: make run DATA=path/to/dataset [MODEL=cnn3_bn EPOCHS=30]"; exit 2; }
	$(BIN)/ferlab train --data "$(DATA)" --model $(MODEL) --epochs $(EPOCHS) --out "$(RUN)"
	$(BIN)/ferlab report "$(RUN)" --data "$(DATA)"

reference: setup
	@test -n "$(NAME)" -a -n "$(DATA)" || { echo "usage: make reference NAME=fast|accurate DATA=fer2013-train-val.zip"; exit 2; }
	$(BIN)/ferlab reproduce configs/recipes/$(NAME).yaml --data "$(DATA)" --out "$(REFERENCE)"
	$(BIN)/ferlab report "$(REFERENCE)/$(NAME)" --data "$(DATA)"

test: setup
	$(BIN)/python -m pytest

# The tiers `make test` leaves out (slow; browser: headless Chromium) and the linter; CI runs them after it.
test-slow: setup
	$(BIN)/python -m pytest -m "slow or browser"

lint: setup
	$(BIN)/ruff check src tests benchmarks
