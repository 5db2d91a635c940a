# Quick start: `make demo` and `make test`. Everything else is optional.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Real local stand-ins for Redis, Blob Storage (Azurite) and Cosmos DB; see scripts/services.sh.
SERVICES     := bash scripts/services.sh
SERVICES_ENV := .services/env

.PHONY: demo test lint typecheck unit docs clean help services-install services-start services-stop services-status checkov-venv

help:
	@echo "make demo   - create .venv if missing, run the whole pipeline on a month of synthetic traffic"
	@echo "make test   - install what the tests need, start the local servers, run ruff, mypy and the"
	@echo "              whole test suite, stop the servers"
	@echo "make services-start / services-stop - run the local servers by hand (endpoints in $(SERVICES_ENV))"
	@echo "make docs   - regenerate docs/cli.md from the commands' --help (a test checks it is current)"
	@echo "make bench  - benchmarks (docs/benchmarks.md); make clean - remove .venv and .chargeback"

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev,functions]'
	# An editable install compiles nothing, and with PYTHONDONTWRITEBYTECODE set every command
	# would compile its modules again (0.04 s of a report); a stale .pyc is recompiled, never used.
	$(BIN)/python -m compileall -q pipeline >/dev/null
	touch $(STAMP)

# checkov (tests/test_checkov.py) in a virtual environment of its own: its bc-python-hcl2
# dependency would overwrite the `hcl2` module of python-hcl2, which the Terraform checks import.
CHECKOV_VENV  := $(VENV)/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed

$(CHECKOV_STAMP): requirements-checkov.txt
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	touch $(CHECKOV_STAMP)

checkov-venv: $(CHECKOV_STAMP)

demo: $(STAMP)
	$(BIN)/chargeback demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

docs: $(STAMP)
	$(BIN)/python scripts/cli_reference.py

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

services-install:
	$(SERVICES) install

services-start: services-install
	$(SERVICES) start

services-stop:
	$(SERVICES) stop

services-status:
	$(SERVICES) status

# ruff, mypy and pytest with the servers' endpoints exported. The servers are stopped whatever
# happens (failure, Ctrl-C); every check runs, and the exit status is pytest's when it failed,
# else the first failing check's.
test: $(STAMP) services-install checkov-venv
	@trap '$(SERVICES) stop' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	$(SERVICES) start || exit $$?; \
	set -a; . ./$(SERVICES_ENV); set +a; \
	status=0; \
	echo "== ruff"; $(BIN)/ruff check . || status=$$?; \
	echo "== mypy"; $(BIN)/mypy || { failed=$$?; [ $$status -ne 0 ] || status=$$failed; }; \
	echo "== import contracts"; $(BIN)/lint-imports --no-cache || { failed=$$?; [ $$status -ne 0 ] || status=$$failed; }; \
	echo "== pytest"; $(BIN)/pytest; tests=$$?; \
	[ $$tests -eq 0 ] || status=$$tests; \
	exit $$status

clean:
	rm -rf $(VENV) .chargeback

# The Azure Functions zip-deploy package, dist/chargeback-functions.zip (see docs/functions.md).
.PHONY: package
package: $(STAMP)
	$(BIN)/python scripts/package_functions.py --out dist/chargeback-functions.zip

# Benchmarks (docs/benchmarks.md): `make bench` (10M-event month), `make bench SCALE=1m` (quick),
# `PROFILE=1` profiles the stages that miss their target, `REPEATS=N` overrides the runs per
# variant. The servers run from their own folder and ports (BENCH_*_PORT), so `make bench` never
# touches the ones `make test` starts, and are stopped whatever happens, as in `make test`.
SCALE            ?= 10m
BENCH_STAMP      := $(VENV)/.bench-installed
BENCH_DIR        := .bench
BENCH_REDIS_PORT ?= 6391
BENCH_BLOB_PORT  ?= 10100
BENCH_COSMOS_PORT ?= 8181
BENCH_SERVICES   := CHARGEBACK_SERVICES_DIR=$(CURDIR)/$(BENCH_DIR)/services CHARGEBACK_REDIS_PORT=$(BENCH_REDIS_PORT) \
	CHARGEBACK_AZURITE_BLOB_PORT=$(BENCH_BLOB_PORT) CHARGEBACK_AZURITE_QUEUE_PORT=$$(($(BENCH_BLOB_PORT) + 1)) \
	CHARGEBACK_AZURITE_TABLE_PORT=$$(($(BENCH_BLOB_PORT) + 2)) CHARGEBACK_COSMOS_PORT=$(BENCH_COSMOS_PORT) $(SERVICES)

$(BENCH_STAMP): $(STAMP) benchmarks/requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r benchmarks/requirements.txt
	touch $(BENCH_STAMP)

.PHONY: bench
bench: $(BENCH_STAMP) services-install
	@trap '$(BENCH_SERVICES) stop' EXIT; trap 'exit 130' INT; trap 'exit 143' TERM; \
	$(BENCH_SERVICES) start || exit $$?; \
	redis_url=$$(sed -n "s/^CHARGEBACK_TEST_REDIS_URL='\(.*\)'$$/\1/p" $(BENCH_DIR)/services/env); \
	cosmos_url=$$(sed -n "s/^CHARGEBACK_TEST_COSMOS_URL='\(.*\)'$$/\1/p" $(BENCH_DIR)/services/env); \
	cosmos_key=$$(sed -n "s/^CHARGEBACK_TEST_COSMOS_KEY='\(.*\)'$$/\1/p" $(BENCH_DIR)/services/env); \
	$(BIN)/python -m benchmarks.run --scale $(SCALE) --work $(BENCH_DIR) --redis-url "$$redis_url" \
		--cosmos-url "$$cosmos_url" --cosmos-key "$$cosmos_key" \
		$(if $(PROFILE),--profile) $(if $(REPEATS),--repeats $(REPEATS))

# Soak (scripts/soak.py, numbers in docs/guarantees.md): the ingest path at volume through the real
# adapters (its own redis-server and Cosmos DB stand-in on loopback), 2 consumers, 1% redeliveries,
# exact totals, RSS sampled. Bounded by SOAK_EVENTS and SOAK_MINUTES, whichever comes first. Not in `make test`.
SOAK_EVENTS  ?= 1000000
SOAK_MINUTES ?= 10
.PHONY: soak
soak: $(STAMP) services-install
	$(BIN)/python scripts/soak.py --events $(SOAK_EVENTS) --minutes $(SOAK_MINUTES) --consumers 2 --duplicates 0.01
