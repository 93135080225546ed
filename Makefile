# The two commands a user types: `make reproduce` and `make test`.
# Each creates .venv if missing and installs ntkscope with the pinned versions of constraints.txt.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ntkscope-installed
OUT    ?= figures
PRESET ?= quick

.PHONY: install test reproduce lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist loadfile

reproduce: $(STAMP)
	$(BIN)/ntkscope reproduce --preset $(PRESET) --out $(OUT)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench

bench: $(STAMP)
	for f in bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
