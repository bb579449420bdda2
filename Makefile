# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

PG_BIN := /usr/lib/postgresql/15/bin

.PHONY: setup demo test lint unit bench soak clean system-deps docs

setup: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

demo: setup
	$(BIN)/entragate demo

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

# Generated and committed: docs/configuration.md, packaging/entragate.example.toml,
# packaging/entragate.1 (the tests fail when they are stale).
docs: setup
	$(BIN)/python -m entragate.docgen .

# The PostgreSQL tests start their own server from these binaries; install them if absent.
# The system CA store is what the agent trusts without ca_bundle; the doctor tests read it.
# systemd-analyze rates the unit's sandbox; sqlite3, curl and openssl run the guides' examples;
# chromium (driven by Playwright's Python API, no browser download) tests the status page.
system-deps:
	@test -x $(PG_BIN)/initdb -a -f /etc/ssl/certs/ca-certificates.crt -a -x /usr/bin/systemd-analyze \
		-a -x /usr/bin/sqlite3 -a -x /usr/bin/curl -a -x /usr/bin/openssl -a -x /usr/bin/chromium -a -x /usr/bin/promtool || { \
		echo "installing postgresql-15, ca-certificates, systemd, sqlite3, curl, openssl, chromium, prometheus (promtool) (needed by the tests)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			postgresql-15 ca-certificates systemd sqlite3 curl openssl chromium; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; }

unit: setup system-deps
	$(BIN)/python -m pytest -q

test: lint unit

# Benchmarks are not tests (make test never runs them): figures land in bench/results.json.
bench: setup
	$(BIN)/python bench/all.py

# The fault soak (the agent a real process on its own PostgreSQL, under every fault in
# turn): 3 minutes by default; e.g. `make soak SOAK_ARGS="--seconds 600 --json"`.
SOAK_ARGS ?=
soak: setup system-deps
	$(BIN)/python bench/soak.py $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
