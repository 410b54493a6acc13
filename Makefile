# NukeWorks: `make run` sets everything up and serves; `make test` runs the whole suite.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-requirements

.PHONY: run setup venv browser test-tools test test-stress lint bench demo-data clean-venv \
	cluster cluster-stop

$(STAMP): requirements.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -q -r requirements.txt
	@touch $(STAMP)

venv: $(STAMP)

## Create databases/default (migrated, display name "Default") and an admin user.
setup: venv
	@mkdir -p instance databases/default/snapshots
	$(PY) manage.py initdb default --display-name Default
	$(PY) manage.py ensureadmin --database default
	$(PY) manage.py collectstatic --noinput -v 0

## Serve on 127.0.0.1:8000 (NUKEWORKS_BIND) with gunicorn (gthread workers), and the task queue's worker
## (manage.py run_huey: builds new databases) beside it; Ctrl+C stops both.
run: setup
	@$(PY) manage.py env --brief
	VENV=$(VENV) nukeworks/serve.sh

## Several servers on loopback (nukeworks/cluster/): PostgreSQL (5433) with the catalog entry
## `cluster`, Redis (6380) as every server's REDIS_URL, the queue worker, two gunicorn app
## servers (8001, 8002) and HAProxy on 127.0.0.1:8080 (round robin, /readyz checks; stats on
## 8404). Debian's postgresql, redis-server and haproxy are installed with apt when missing
## (root). Detaches: `make cluster-stop` stops exactly what it started; data stays in
## instance/cluster/. Ports: CLUSTER_PORT, CLUSTER_APP_PORTS, CLUSTER_POSTGRES_PORT,
## CLUSTER_REDIS_PORT, CLUSTER_STATS_PORT.
cluster: setup
	@$(PY) manage.py env --brief
	$(PY) -m nukeworks.cluster start

cluster-stop: venv
	$(PY) -m nukeworks.cluster stop

## A second database, databases/demo/, with a few companies.
demo-data: setup
	$(PY) manage.py initdb demo --display-name Demo
	$(PY) manage.py seed_demo --database demo
	$(PY) manage.py ensureadmin --database demo

## Debian's chromium for the browser tests (installed with apt when missing and root).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: browser tests will be skipped (apt-get install chromium)"; fi; }

## strace: tests/test_sqlite_lock_race.py slows SQLite's close() with it to provoke a race.
## axe-core (npm registry, tests/js/package-lock.json): injected by the browser tests.
## PostgreSQL, Redis and HAProxy (Debian's packages): the several-servers tests start their own
## on loopback ports (nukeworks/cluster/services.py); the packaged services are left stopped.
test-tools: venv
	@command -v strace >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq strace >/dev/null; \
	  else echo "strace is missing: the SQLite lock race test will be skipped (apt-get install strace)"; fi; }
	$(PY) -m nukeworks.cluster packages
	@test -f tests/js/node_modules/axe-core/axe.min.js || { \
	  if command -v npm >/dev/null 2>&1; then npm ci --prefix tests/js --no-audit --no-fund --silent; \
	  else echo "npm is missing: the accessibility checks of the browser tests will fail (apt-get install npm)"; fi; }

test: venv browser test-tools
	$(VENV)/bin/pytest

## The whole suite three times in a row with every core kept busy (flakiness check; not in CI).
test-stress: venv browser
	$(PY) tests/stress.py

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: venv
	$(PY) bench/run_all.py

clean-venv:
	rm -rf $(VENV)
