# ECNF developer commands. `make test` and `make app` create the virtual environment themselves.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install test test-cpus lint format app notebooks clean

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

# the browser test drives a system Chromium, or Playwright's (downloaded here when none exists)
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python scripts/browser.py --ensure
	$(BIN)/python -m pytest

# the suite under every CPU capability this machine has, with 1 and 2 threads
test-cpus: $(STAMP)
	$(BIN)/python scripts/cross_cpu.py test

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# executed copies of the course notebooks, solutions filled in (notebooks/executed/)
notebooks: $(STAMP)
	$(BIN)/python scripts/notebooks.py execute

app: $(STAMP)
	$(BIN)/streamlit run app.py --server.fileWatcherType none

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
