# rentgate: `make run` serves the demo, `make test` runs the suite.
PYTHON ?= python3
# Address and port that `make run` serves on, such as BIND=127.0.0.1:5099.
BIND ?= 127.0.0.1:5000
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run migrate seed test test-sqlite lint format bench bench-deps clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# newman (pinned in package-lock.json) runs the Postman collection in the tests.
NODE_STAMP := node_modules/.installed

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $(NODE_STAMP)

install: $(STAMP) $(NODE_STAMP)

migrate: install
	$(BIN)/rentgate migrate

seed: migrate
	$(BIN)/rentgate seed-demo

run: seed
	$(BIN)/rentgate serve --bind $(BIND)

# Runs every test on SQLite and on PostgreSQL (RENTGATE_TEST_POSTGRES_URL,
# default postgresql+psycopg://postgres@127.0.0.1:5432/test).
test: install
	$(BIN)/pytest -q

test-sqlite: install
	RENTGATE_TEST_BACKENDS=sqlite $(BIN)/pytest -q

lint: install
	$(BIN)/ruff check src tests migrations
	$(BIN)/ruff format --check src tests migrations

format: install
	$(BIN)/ruff format src tests migrations

# wrk (a Debian package) drives the load; pyinstrument profiles one order.
bench-deps: install
	apt-get update
	apt-get install -y wrk
	$(BIN)/pip install --quiet -e '.[dev,bench]'

# Needs `make bench-deps` once and PostgreSQL on 127.0.0.1:5432; about 6 minutes.
bench: install
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
