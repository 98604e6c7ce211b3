# Brikk: the two commands are `make run` and `make test` (see README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
HOST ?= 127.0.0.1
PORT ?= 8000

# Real services for `make test-services` and the benchmark (the machine's PostgreSQL and Redis).
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/test
TEST_REDIS_URL ?= redis://127.0.0.1:6379/0

# Tests run with production settings (debug off) over plain http, with throwaway secrets made per run.
TEST_ENV = DJANGO_DEBUG=false DJANGO_HTTPS=false \
	DJANGO_SECRET_KEY=$$($(PY) -c 'import secrets; print(secrets.token_urlsafe(64))') \
	BRIKK_ENCRYPTION_KEYS=$$($(PY) -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')

.PHONY: run test test-services lint format bench bench-delivery chromium nginx wrk install install-dev clean

$(VENV)/.installed: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed requirements-dev.txt
	$(PIP) install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## run: install, migrate, seed the demo, print the login and serve on http://$(HOST):$(PORT)/
## (the demo password is printed once and kept; RESET_PASSWORD=1 prints a new one)
run: $(VENV)/.installed
	DJANGO_DEBUG=true $(PY) manage.py migrate --no-input
	DJANGO_DEBUG=true $(PY) manage.py seed_demo --url http://$(HOST):$(PORT)/ $(if $(RESET_PASSWORD),--reset-password)
	DJANGO_DEBUG=true $(PY) manage.py runserver $(HOST):$(PORT)

## chromium: Debian's Chromium for the browser tests (never a downloaded browser)
chromium:
	@command -v chromium >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }

## nginx: Debian's nginx for the reverse-proxy tests (tests/project/test_reverse_proxy.py start their own nginx processes)
nginx:
	@command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq nginx; }

## wrk: Debian's wrk, the load generator of `make bench` (never needed by the tests)
wrk:
	@command -v wrk >/dev/null || { \
		SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq wrk; }

# The benchmark's own virtualenv: what the production image installs (requirements.txt) and the servers compared,
# nothing of requirements-dev.txt, so that the servers measured import what production imports (with the dev extras
# installed, DRF imports requests and pygments: about 6 MiB more per worker).
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: requirements.txt bench/requirements-bench.txt
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install --quiet --upgrade pip
	$(BENCH_VENV)/bin/pip install --quiet -r requirements.txt -r bench/requirements-bench.txt
	touch $@

## test: install what the tests need and run them on the embedded defaults (SQLite, in-process cache)
test: $(VENV)/.installed-dev chromium nginx
	$(TEST_ENV) $(PY) -m pytest -m "not pg_redis" $(PYTEST_ARGS)

## test-services: the whole suite against the real PostgreSQL and Redis
test-services: $(VENV)/.installed-dev chromium nginx
	$(TEST_ENV) DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest $(PYTEST_ARGS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	DJANGO_DEBUG=true $(PY) manage.py makemigrations --check --dry-run

format: $(VENV)/.installed-dev
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

clean:
	rm -rf $(VENV) $(BENCH_VENV) db.sqlite3 staticfiles .pytest_cache

## bench: wrk against the production server on PostgreSQL + Redis, in one run: a bare Django view (gunicorn
## gthread 2x4, the reference, measured first and last), /healthz, the signed echo, the batch send and a drain of
## the inbox, from .venv-bench (a production install) on a new database beside TEST_DATABASE_URL's (<name>_speed)
## (bench/speed_benchmark.py; BENCH_ARGS="--duration 3", "--server granian", "--compare-servers"; --help lists
## the knobs). Writes bench/results/speed.json.
bench: $(BENCH_VENV)/.installed wrk
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(BENCH_VENV)/bin/python bench/speed_benchmark.py $(BENCH_ARGS)

## bench-delivery: the inbox benchmark (send → received latency, drain, idle streams; bench/delivery_benchmark.py)
bench-delivery: $(VENV)/.installed
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) bench/delivery_benchmark.py $(BENCH_ARGS)
