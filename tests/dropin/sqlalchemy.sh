#!/usr/bin/env bash
# dropin/sqlalchemy-gunicorn — an unmodified SQLAlchemy app (NullPool, a
# psycopg2 URL "postgresql+psycopg2://user@/POOL?host=DIR") under gunicorn
# with 16 sync workers, on a pool of 3 connections: a few hundred concurrent
# requests are all answered 200, and the server never sees more than 3 backends.
# shellcheck source=tests/dropin/lib.sh
. "$(dirname "$0")/lib.sh"
dt_init "$@"

WORKERS=16
REQUESTS=400
CONCURRENCY=32
CAP=3
dt_pool sup web pool_size=$CAP max_overflow=0 pool_timeout=60
dt_start sup
APP=$(dt_app sup web)
if dt_dropin; then
  SA_URL="postgresql+psycopg2://$PGUSER@/web?host=$(dt_dir sup)"
else
  SA_URL="postgresql+psycopg2://$PGUSER@/$PGDATABASE?host=$FORKPOOL_TEST_PG_SOCKET_DIR&port=$FORKPOOL_TEST_PG_PORT&application_name=$APP"
fi
dt_log "engine URL: $SA_URL"

PORT=$(dt_free_port)
cp "$DT_HERE/sqlalchemy_app.py" "$DT_TMP/"
DT_SA_URL=$SA_URL dt_spawn "$DT_TMP/gunicorn.log" "$DT_PY" -m gunicorn --chdir "$DT_TMP" \
  --bind "127.0.0.1:$PORT" --workers "$WORKERS" --worker-class sync --timeout 120 \
  --graceful-timeout 10 sqlalchemy_app:app
GPID=$DT_PID
dt_wait_tcp "$PORT" "$GPID" 30 || dt_die "gunicorn did not listen on 127.0.0.1:$PORT"
# All workers up (booted) before the load, so that each may take a request.
for ((i = 0; i < 300; i++)); do
  [[ $(grep -c 'Booting worker' "$DT_TMP/gunicorn.log") -ge $WORKERS ]] && break
  sleep 0.1
done
dt_log "gunicorn (pid $GPID) with $(grep -c 'Booting worker' "$DT_TMP/gunicorn.log") workers on 127.0.0.1:$PORT"
curl -fsS "http://127.0.0.1:$PORT/" | sed 's/^/    one request: /' || true

dt_sampler_start "$APP"
timeout 150 "$DT_PY" "$DT_HERE/loadgen.py" --requests "$REQUESTS" --concurrency "$CONCURRENCY" \
  "http://127.0.0.1:$PORT/" >"$DT_TMP/load.json" || dt_fail "the load generator exits 0"
dt_sampler_stop
dt_check_load "$DT_TMP/load.json" "$REQUESTS" "$APP" "$CAP" $((WORKERS / 2)) web
dt_check_cap "$CAP" "$WORKERS"
dt_check "gunicorn logged no worker error" \
  bash -c "! grep -E 'Traceback|WORKER TIMEOUT|Worker exiting' '$DT_TMP/gunicorn.log'"

kill -TERM "$GPID"
rc=0
timeout 30 tail --pid="$GPID" -f /dev/null || rc=$?
dt_check "gunicorn stops on SIGTERM" test "$rc" -eq 0
if dt_dropin; then
  n=$(dt_pool_field sup web checked_out)
  dt_check "forkpoolctl: 0 connections checked out after gunicorn stopped (got $n)" test "$n" = 0
fi
dt_stop sup
dt_finish
