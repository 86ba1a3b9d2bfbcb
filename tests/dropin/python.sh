#!/usr/bin/env bash
# dropin/psycopg2, dropin/psycopg3, dropin/psycopg3-async — unmodified
# psycopg2 and psycopg 3 (sync and asyncio) programs, with Debian's
# /usr/bin/python3 and packages, through the drop-in:
#   many      16 processes x 50 connect/query/close on a pool of 3: all succeed,
#             never more than 3 backends
#   fork      a child that inherited a connection gets a clean error from it,
#             closing it there is harmless, and the parent's keeps working
#   cancel    conn.cancel() from another thread (task) returns at once and the
#             pg_sleep(10) ends with "canceling statement" within 2 s; PQhost
#             reports the host= the program asked for; psycopg 3 with libpq >= 17:
#             conn.cancel_safe() (PQcancelCreate/PQcancelStart/PQcancelPoll) too
#   hygiene   a lease closed inside an open, then an aborted, transaction: the
#             next lease of the same session has no transaction, no temp table,
#             no SET left
#   prepared  the same statements prepared in many leases of one session
#             (psycopg 3: prepare_threshold=0): no DuplicatePreparedStatement
#
#   python.sh DRIVER (--dropin LIBPQ.SO.5 | --direct) --forkpoold PATH ...
# DRIVER: psycopg2 | psycopg | psycopg-async
DRIVER=${1:-}
shift || true
case $DRIVER in
  psycopg2 | psycopg | psycopg-async) ;;
  *) echo "usage: $0 psycopg2|psycopg|psycopg-async (--dropin LIB | --direct) --forkpoold PATH" >&2; exit 2 ;;
esac
# shellcheck source=tests/dropin/lib.sh
. "$(dirname "$0")/lib.sh"
DT_NAME=py_${DRIVER//-/_}
dt_init "$@"

CAP=3
# "main": the load; "one": a pool of one connection, so that every lease is the
# same session. Both keep the default reset_on_return (rollback): the drop-in
# has what a client prepared or SET cleaned whatever the pool's mode.
dt_pool sup main pool_size=$CAP max_overflow=0 pool_timeout=60
dt_pool sup one pool_size=1 max_overflow=0 pool_timeout=60
dt_start sup
APP=$(dt_app sup main)
APP1=$(dt_app sup one)

py() { # SCENARIO SECONDS CI APP [ARGS...]
  local sc=$1 secs=$2 ci=$3 app=$4
  shift 4
  dt_log "scenario $sc"
  dt_client_checks "$sc" "$secs" "$DT_TMP/$sc.out" "$DT_PY" "$DT_HERE/pyclients.py" "$DRIVER" "$sc" \
    --ci "$ci" --app "$app" --mode "$DT_MODE" "$@"
}

dt_sampler_start "$APP"
py many 100 "$(dt_conninfo sup main)" "$APP" --procs 16 --connects 50 --cap "$CAP"
dt_sampler_stop
dt_check_cap "$CAP" 16

py fork 40 "$(dt_conninfo sup main)" "$APP"
py cancel 60 "$(dt_conninfo sup main)" "$APP"
py hygiene 40 "$(dt_conninfo sup one)" "$APP1"
py prepared 60 "$(dt_conninfo sup one)" "$APP1" --procs 4 --connects 25 --cap 1

if dt_dropin; then
  for p in main one; do
    n=$(dt_pool_field sup "$p" checked_out)
    dt_check "forkpoolctl: 0 connections of pool $p checked out at the end (got $n)" test "$n" = 0
  done
fi
dt_stop sup
dt_finish
