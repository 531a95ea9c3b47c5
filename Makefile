# Holdfast: `make run` serves the portal on SQLite; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 5000

.PHONY: run test test-newest test-release lint format bench install install-test assets dist clean messages

run: install assets ## install, migrate, seed the demo tenant, serve on http://127.0.0.1:5000
	$(BIN)/holdfast db upgrade
	$(BIN)/holdfast demo
	$(BIN)/holdfast run --host $(HOST) --port $(PORT)

# The suite runs on SQLite, then again on a throwaway PostgreSQL cluster when PostgreSQL
# is installed (or HOLDFAST_REQUIRE_ALL=1 demands it).
POSTGRES := $(firstword $(wildcard /usr/lib/postgresql/*/bin/initdb))

test: install-test assets ## every test (browser tests need Debian's chromium)
	$(BIN)/pytest $(PYTEST_ARGS)
ifneq ($(POSTGRES)$(HOLDFAST_REQUIRE_ALL),)
	HOLDFAST_TEST_DB=postgresql $(BIN)/pytest $(PYTEST_ARGS)
endif

# What relies on libraries' internals (app/internals.py, deploy/gunicorn_worker.py), run
# against the newest releases of those libraries in a venv of its own, ignoring
# pyproject.toml's pins (gunicorn's above all): each internal is still there, or Holdfast
# falls back to the library's plain behaviour and logs it. CI runs it after `make test`.
NEWEST ?= .venv-newest
NEWEST_LIBRARIES := gunicorn flask flask-login werkzeug sqlalchemy
NEWEST_TESTS := tests/test_gunicorn_worker.py tests/test_serve.py tests/test_internals.py \
  tests/test_ops.py tests/test_api_proxy.py
test-newest: assets
	test -x $(NEWEST)/bin/python || $(PYTHON) -m venv $(NEWEST)
	$(NEWEST)/bin/pip install --quiet --upgrade pip
	$(NEWEST)/bin/pip install --quiet -e '.[postgres,redis,test]'
	$(NEWEST)/bin/pip install --quiet --upgrade $(NEWEST_LIBRARIES)
	$(NEWEST)/bin/python -c 'import importlib.metadata as m, sys; \
	  print("newest:", ", ".join(f"{n} {m.version(n)}" for n in sys.argv[1:]))' $(NEWEST_LIBRARIES)
	$(NEWEST)/bin/pytest $(NEWEST_TESTS) $(PYTEST_ARGS)

# The release checks (tests/test_release_container.py): build the container image and run
# it alone and in the compose stack with podman. Slow (a few minutes); CI runs it after
# `make test`. The container settings this machine needs: .ci/containers.conf.
test-release: install-test
	CONTAINERS_CONF=$${CONTAINERS_CONF:-$(CURDIR)/.ci/containers.conf} \
	  $(BIN)/pytest -m release $(PYTEST_ARGS)

# The OpenAPI document is dumped from the app and linted by Redocly CLI (package.json's
# devDependencies; rules in redocly.yaml).
lint: install-test assets
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python tools/import_contract.py
	$(BIN)/python tools/lint_openapi.py

# Translations (app/i18n.py): extract the marked words of pages, mails and flash messages,
# merge them into each language's .po (translate the new ones there), and compile the
# .mo files, which are committed (tests/test_i18n.py checks they match their .po).
messages: install-test
	$(BIN)/pybabel extract -F babel.cfg -k _l -k lazy_gettext -k N_ -k N_plural:1,2 --no-location --omit-header \
	  -o app/translations/messages.pot .
	$(BIN)/pybabel update -i app/translations/messages.pot -d app/translations -w 100
	$(BIN)/pybabel compile -d app/translations --statistics

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-test assets
	$(BIN)/python -m bench

# A wheel and an sdist in $(DIST)/, carrying templates, static files (the npm ones too),
# migrations and the gunicorn settings (app/paths.py); the wheel is built from the sdist,
# so both are complete. Runs on any machine with Python and npm.
DIST ?= dist
dist: install-test assets
	rm -rf build $(DIST)
	$(BIN)/python -m build --outdir $(DIST) .

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test
assets: static/vendor/.installed

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(VENV)/bin/python
	$(BIN)/pip install --quiet -e '.[postgres,redis]'
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[postgres,redis,test,dev]'
	touch $@

# Front-end packages come from the npm registry (pinned in package-lock.json), never the repo.
static/vendor/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js \
	   node_modules/@picocss/pico/css/pico.min.css \
	   node_modules/chart.js/dist/chart.umd.min.js static/vendor/
	touch $@

clean:
	rm -rf $(VENV) $(NEWEST) node_modules static/vendor instance .pytest_cache build dist
