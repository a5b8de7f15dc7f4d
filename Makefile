# Two commands do everything on a fresh machine with Python 3.11+:
#   make train   — set up .venv and train the two-layer net on the bundled digits
#   make test    — set up .venv, lint and run the test suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: train test lint gradcheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,plot]"
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/fnnet train --dataset digits --init he --epochs 100 --log-every 10

# Two pytest workers: the suite is mostly single-threaded compiles, so two cores halve it;
# worksteal rebalances the last tests so that one worker does not finish alone.
PYTEST_WORKERS ?= 2

test: $(STAMP) lint
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist worksteal

gradcheck: $(STAMP)
	$(BIN)/fnnet gradcheck --net two-layer --dtype float64

# The benchmark with its PyTorch peers (the extra "peers"): small config, then big.
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[test,plot,peers]"
	$(BIN)/python experiments/benchmark.py --config small
	$(BIN)/python experiments/benchmark.py --config big

lint: $(STAMP)
	$(BIN)/ruff check fnnet tests experiments

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
