#!/usr/bin/env bash
# `make run`: gunicorn and, beside it, the task queue's worker (manage.py run_huey, which builds
# new databases). Both stop together: Ctrl+C or SIGTERM stops both, and when gunicorn exits
# the worker is stopped too. The worker stops gracefully (SIGINT: a build in progress ends
# first); a build cut short anyway is shown as interrupted and can be rebuilt.
set -u
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"

# Gunicorn's address (NUKEWORKS_BIND) taken, e.g. by another `make run`: one line saying so and
# how to choose another, before anything starts (no gunicorn traceback, no orphan worker).
"$VENV/bin/python" nukeworks/port_check.py || exit 1

# Prometheus metrics (metrics/): gunicorn's workers and the queue worker write their values in
# one folder (instance/metrics/), emptied here so every counter starts from zero.
PROMETHEUS_MULTIPROC_DIR="$("$VENV/bin/python" -m metrics.multiprocess)" || exit 1
export PROMETHEUS_MULTIPROC_DIR

"$VENV/bin/python" manage.py run_huey &
worker=$!
"$VENV/bin/gunicorn" -c nukeworks/gunicorn.conf.py &
server=$!
echo "gunicorn pid $server, queue worker (manage.py run_huey) pid $worker"

# Each gets the signal the script got (Ctrl+C reaches all three already: gunicorn is told
# once more, harmlessly); the worker always SIGINT, its graceful stop.
stop() {
  kill "-$1" "$server" 2>/dev/null
  kill -INT "$worker" 2>/dev/null
  wait "$server" 2>/dev/null
  wait "$worker" 2>/dev/null
}
trap 'stop INT; exit 130' INT
trap 'stop TERM; exit 143' TERM

wait "$server"
status=$?
stop TERM
exit "$status"
