# qa: two commands on a fresh machine (see README.md).
#   make serve   set up (.venv, packages, model), then serve the HTTP API on 127.0.0.1:8000
#   make test    set up (and Chromium for the browser tests, LibreOffice for the parity test), check the
#                compose file, run every test

SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help setup serve test bench-tools check-compose readme clean

help:
	@echo "make serve          set up and run the HTTP API on http://127.0.0.1:8000 (docs at /docs)"
	@echo "make test           set up and run the whole test suite (artifacts in test-artifacts/)"
	@echo "make setup          only create/refresh .venv and fetch the model"
	@echo "make bench-tools    set up, plus headless LibreOffice for qa bench --parity"
	@echo "make check-compose  validate docker-compose.yml and the Dockerfile without a Docker engine"
	@echo "make readme         regenerate the README's configuration table from qa/settings.py"

setup:
	bash scripts/setup.sh

serve:
	bash scripts/setup.sh
	@printf '\n\033[1m==> qa serve (Ctrl-C stops it)\033[0m\n'
	.venv/bin/qa serve

test:
	bash scripts/setup.sh --browser --office
	bash scripts/check-compose.sh
	-@.venv/bin/python scripts/settings_table.py --check
	bash scripts/run-tests.sh

# What the development benchmarks need beyond the service: LibreOffice (qa bench --parity).
bench-tools:
	bash scripts/setup.sh --office

# Regenerate the README's configuration table from qa/settings.py.
readme:
	.venv/bin/python scripts/settings_table.py --write

check-compose:
	bash scripts/check-compose.sh

clean:
	rm -rf test-artifacts .pytest_cache
