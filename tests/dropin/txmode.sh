#!/usr/bin/env bash
# dropin/tx-psycopg2, dropin/tx-psycopg3, dropin/tx-prepared, dropin/tx-pins, dropin/tx-errors —
# unmodified psycopg2 and psycopg 3 programs (Debian's /usr/bin/python3 and
# packages) that keep their connections open, through the drop-in, on pools in
# transaction mode (pool_mode = transaction); txclients.py has the details:
#   psycopg2   32 processes, each with one connection for its life, all open at
#              once, each running transactions in a loop on a pool of 4 (no
#              overflow): every process commits all of its transactions, every
#              answer carries its query's token, nobody sees another's
#              uncommitted rows, never more than 4 backends
#   psycopg3   the same with psycopg 3 and prepare_threshold=0: protocol-level
#              prepared statements run on whichever session a transaction gets
#   psycopg3-async  the same from 16 asyncio tasks in one thread, each with its
#              own connection: a command waiting for a session must not block
#              the thread (psycopg3-async-32: 32 tasks, as many connections as
#              forkpoold's default max_connections_per_pid)
#   prepared   psycopg 3, prepare_threshold=0, pool of 2: a connection's
#              statement is prepared on each session its transactions run on,
#              once (pg_prepared_statements); two processes on one session share
#              it, the next transactions do not prepare it again; psycopg's
#              DEALLOCATE, DISCARD ALL and a new session (forkpoolctl dispose)
#              followed by a correct re-prepare
#   pins       each state-creating command pins the session (forkpoolctl shows
#              it and why; the next transaction sees the state); closed, the
#              state is gone; a connection that creates no state is never pinned
#   errors     a failed transaction then ROLLBACK keeps then releases the
#              session; cancel() stops the session that runs the transaction
#              now (not the one of connect time), not the other connection's; a
#              forked child with an inherited connection, idle or inside a
#              transaction, never reaches the parent's session; the pool exhausted (pool_timeout 1 s): a query error
#              naming forkpool, the connection usable afterwards; the test's own
#              PostgreSQL restarted while the connections are idle: the next
#              transaction works or fails clearly, the one after works
#
#   txmode.sh psycopg2|psycopg3|psycopg3-async[-32]|prepared|pins|errors (--dropin LIBPQ.SO.5 | --direct) --forkpoold PATH ...
SCENARIO=${1:-}
shift || true
case $SCENARIO in
  psycopg2 | psycopg3 | psycopg3-async | psycopg3-async-32 | prepared | pins | errors) ;;
  *) echo "usage: $0 psycopg2|psycopg3|psycopg3-async[-32]|prepared|pins|errors (--dropin LIB | --direct) --forkpoold PATH" >&2; exit 2 ;;
esac
# shellcheck source=tests/dropin/lib.sh
. "$(dirname "$0")/lib.sh"
DT_NAME=tx_${SCENARIO//-/_}
dt_init "$@"

SOCK=$(dt_dir sup)/forkpool.sock
DIRECT_CI="host=$FORKPOOL_TEST_PG_SOCKET_DIR port=$FORKPOOL_TEST_PG_PORT dbname=$PGDATABASE user=$PGUSER application_name=dt-tx-direct"

py() { # DRIVER SCENARIO SECONDS CI [ARGS...]
  local drv=$1 sc=$2 secs=$3 ci=$4
  shift 4
  dt_log "scenario $sc ($drv)"
  dt_client_checks "$sc" "$secs" "$DT_TMP/$sc.out" "$DT_PY" "$DT_HERE/txclients.py" "$drv" "$sc" \
    --ci "$ci" --mode "$DT_MODE" --ctl "$DT_FORKPOOLCTL" --socket "$SOCK" "$@"
}

# forkpoolctl: the pool is in transaction mode, and nothing is left checked out.
check_pools() {
  local p n
  dt_dropin || return 0
  for p in "$@"; do
    n=$(dt_pool_field sup "$p" pool_mode || true)
    dt_check "forkpoolctl status --json: pool $p has pool_mode transaction (got ${n:-nothing})" \
      test "$n" = transaction
    n=$(dt_pool_field sup "$p" checked_out)
    dt_check "forkpoolctl: 0 connections of pool $p checked out at the end (got $n)" test "$n" = 0
  done
}

case $SCENARIO in
  psycopg2 | psycopg3 | psycopg3-async | psycopg3-async-32)
    CAP=4
    PROCS=32
    [[ $SCENARIO == psycopg3-async ]] && PROCS=16
    dt_pool sup main pool_mode=transaction pool_size=$CAP max_overflow=0 pool_timeout=60
    dt_start sup
    drv=psycopg2 sc=loop
    [[ $SCENARIO == psycopg3* ]] && drv=psycopg
    [[ $SCENARIO == *-async* ]] && sc=async
    dt_sampler_start "$(dt_app sup main)"
    py "$drv" "$sc" 250 "$(dt_conninfo sup main)" --direct-ci "$DIRECT_CI" --pool main \
      --procs "$PROCS" --txns 30 --table "dt_tx_$$"
    dt_sampler_stop
    dt_check_cap "$CAP" "$PROCS"
    check_pools main
    ;;
  prepared)
    dt_pool sup main pool_mode=transaction pool_size=2 max_overflow=0 pool_timeout=30
    dt_start sup
    py psycopg prepared 60 "$(dt_conninfo sup main)" --direct-ci "$DIRECT_CI" --pool main
    check_pools main
    ;;
  pins)
    dt_pool sup main pool_mode=transaction pool_size=2 max_overflow=0 pool_timeout=30
    dt_start sup
    py psycopg2 pins 120 "$(dt_conninfo sup main)" --direct-ci "$DIRECT_CI" --pool main
    check_pools main
    ;;
  errors)
    # A PostgreSQL of its own, to restart.
    PG2=$DT_TMP/pg2
    "$DT_HERE/../../contrib/scratch-pg.sh" start "$PG2" >"$DT_TMP/scratch-pg2.log" 2>&1 ||
      dt_die "could not start a second PostgreSQL: $(tail -n 5 "$DT_TMP/scratch-pg2.log")"
    dt_at_exit "$DT_HERE/../../contrib/scratch-pg.sh" stop "$PG2"
    # shellcheck source=/dev/null
    PG2_URL=$(. "$PG2/env" && echo "$FORKPOOL_TEST_PG_URL")
    # shellcheck source=/dev/null
    PG2_DIRECT=$(. "$PG2/env" && echo "host=$PGHOST port=$PGPORT dbname=$PGDATABASE user=$PGUSER")
    PGBIN=$(pg_config --bindir)
    if [[ $(id -u) -eq 0 ]]; then as_pg="runuser -u postgres --"; else as_pg=; fi
    RESTART="cd $PG2 && $as_pg $PGBIN/pg_ctl -D $PG2/data -l $PG2/postgres.log -w -t 60 -m fast restart >/dev/null"

    dt_pool sup main pool_mode=transaction pool_size=2 max_overflow=0 pool_timeout=30
    dt_pool sup small pool_mode=transaction pool_size=1 max_overflow=0 pool_timeout=1
    dt_pool sup rs --url "$PG2_URL" --direct "$PG2_DIRECT" pool_mode=transaction pool_size=2 \
      max_overflow=0 pool_timeout=30
    dt_start sup
    py psycopg2 rollback 60 "$(dt_conninfo sup main)" --direct-ci "$DIRECT_CI" --pool main
    py psycopg2 cancel 60 "$(dt_conninfo sup main)" --direct-ci "$DIRECT_CI" --pool main
    py psycopg2 fork 60 "$(dt_conninfo sup main)" --direct-ci "$DIRECT_CI" --pool main
    py psycopg2 exhausted 90 "$(dt_conninfo sup small)" --direct-ci "$DIRECT_CI" \
      --ci-small "$(dt_conninfo sup small)" --pool-small small --pool-timeout 1
    py psycopg2 restart 150 "$(dt_conninfo sup rs)" --direct-ci "$PG2_DIRECT" --pool rs \
      --restart-cmd "$RESTART"
    check_pools main small rs
    ;;
esac
dt_stop sup
dt_finish
