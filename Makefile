# Glucoshare developer entry points. `make run` and `make test` are all a new machine needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Reference data for the analytics tests (iglu's example data and iglu 4.3.0's results, GPL, read in
# place by the tests, never copied into the project): the iglu-python 0.4.3 source distribution.
ORACLES := .oracles/iglu_python-0.4.3.tar.gz
# The accessibility engine the browser tests inject (axe-core, MPL-2.0, from the npm registry; never
# committed): downloaded with npm when it is there, else the accessibility tests say why they skip.
AXE := .oracles/axe-core-4.14.1.min.js

.PHONY: run test lint bench fuzz load install clean help images

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(INSTALLED): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "Python 3.11 or newer is required"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	@touch $@

install: $(INSTALLED) ## create .venv and install Glucoshare with its development tools

$(ORACLES): | $(INSTALLED)
	@$(BIN)/python -m pip download --quiet --no-deps --no-binary :all: iglu-python==0.4.3 -d .oracles \
		|| echo "iglu reference data not downloaded: the analytics oracle tests will be skipped"

run: $(INSTALLED) ## fill the default SQLite database with a demo clinic and patients, print the logins, serve the web app
	$(BIN)/glucoshare demo --patients 3
	@echo "Open http://127.0.0.1:8000 and sign in with one of the demo logins above (Ctrl-C stops the server)."
	$(BIN)/glucoshare serve

$(AXE):
	@mkdir -p .oracles
	@(command -v npm >/dev/null && cd .oracles && npm pack --silent axe-core@4.14.1 >/dev/null \
		&& tar -xzf axe-core-4.14.1.tgz package/axe.min.js && mv package/axe.min.js axe-core-4.14.1.min.js \
		&& rm -rf package axe-core-4.14.1.tgz) || echo "axe-core not downloaded: the accessibility checks will be skipped"

test: $(INSTALLED) $(ORACLES) $(AXE) ## run the whole test suite (SQLite and, when reachable, PostgreSQL)
	$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS)

fuzz: $(INSTALLED) ## damage every export layout 1,000 ways and fuzz the HTTP API (about 20 min); counts in build/fuzz-report.json
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -n 2 tests/fuzz tests/web/test_openapi_fuzz.py $(PYTEST_ARGS)

lint: $(INSTALLED) ## ruff, ruff format --check and mypy --strict
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy

images: $(INSTALLED) $(AXE) ## render the reports and photograph the web app (Chromium) into docs/images
	GLUCOSHARE_TEST_ARTIFACTS=build/test-artifacts $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/reports/test_report_service.py tests/browser/test_accessibility.py \
		-k "sqlite and (every_report_renders or agp_pdf_is_one_page or accessibility)"
	mkdir -p docs/images/reports docs/images/web
	cp build/test-artifacts/reports/*.png docs/images/reports/
	cd build/test-artifacts/screens && cp dashboard-1440.png dashboard-390.png report-agp-1440.png \
		clinic-1440.png sharing-390.png signin-390.png apps-390.png apps-1440.png ../../../docs/images/web/

bench: $(INSTALLED) ## run the benchmarks and write BENCHMARKS.md
	$(BIN)/python benchmarks/run.py --out BENCHMARKS.md

load: $(INSTALLED) ## 1,000 patients x 90 days on PostgreSQL, then 200 API clients for 10 minutes (about 30 minutes)
	mkdir -p build benchmarks/results
	$(BIN)/python benchmarks/population.py --out-section benchmarks/results/population.md --json build/population.json $(LOAD_ARGS)

clean: ## remove the virtual environment and caches (not your data in .glucoshare)
	rm -rf $(VENV) .oracles .pytest_cache .mypy_cache .ruff_cache .hypothesis
