#!/usr/bin/env bash
# dropin/pgbench — unmodified pgbench -C (a new connection for every
# transaction), 16 clients on 16 threads for 5 s, on a pool of 3 connections
# (max_overflow 0): no failed transaction, never more than 3 backends; and psql
# through the drop-in runs a query.
#
# pgbench's tables are created straight on the server first (pgbench -i).
# -j equals -c on purpose: with fewer threads than clients, one thread can wait
# for a lease that another of its own clients holds (documented behaviour).
# shellcheck source=tests/dropin/lib.sh
. "$(dirname "$0")/lib.sh"
dt_init "$@"

CLIENTS=16
SECONDS_=5
CAP=3
dt_pool sup bench pool_size=$CAP max_overflow=0 pool_timeout=60
dt_start sup
APP=$(dt_app sup bench)
CI=$(dt_conninfo sup bench)

dt_log "pgbench -i straight to the server"
env -u LD_PRELOAD -u LD_LIBRARY_PATH pgbench -i -q -s 1 -I dtgvp "$PGDATABASE" \
  >"$DT_TMP/pgbench-init.log" 2>&1 || { cat "$DT_TMP/pgbench-init.log"; dt_die "pgbench -i failed"; }

# psql through the drop-in: one query, and what the session is.
out=$(dt_run timeout 30 psql -X -At -v ON_ERROR_STOP=1 "$CI" \
  -c "select 6 * 7, current_setting('application_name'), count(*) from pgbench_branches" 2>&1) || true
dt_check "psql runs a query (got: $out)" test "$out" = "42|$APP|1"
# PQhost/PQport report what the app asked for.
# (With the drop-in, any port: it is not used.)
if dt_dropin; then want_host=$(dt_dir sup) want_port=6543; else
  want_host=$FORKPOOL_TEST_PG_SOCKET_DIR want_port=$FORKPOOL_TEST_PG_PORT
fi
out=$(dt_run timeout 30 psql -X "$CI port=$want_port" -c '\conninfo' 2>&1) || true
dt_check "psql's \\conninfo names the socket directory and port it asked for ($out)" \
  grep -qF "via socket in \"$want_host\" at port \"$want_port\"" <<<"$out"

dt_sampler_start "$APP"
rc=0
dt_run timeout 120 pgbench -n -C -c "$CLIENTS" -j "$CLIENTS" -T "$SECONDS_" \
  -l --log-prefix="$DT_TMP/txlog" "$CI" \
  >"$DT_TMP/pgbench.log" 2>&1 || rc=$?
dt_sampler_stop
sed 's/^/    /' "$DT_TMP/pgbench.log"

dt_check "pgbench exits 0 (status $rc)" test "$rc" -eq 0
processed=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$DT_TMP/pgbench.log")
failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$DT_TMP/pgbench.log")
# The transaction log: one line per transaction, the client's id first.
clients_done=$(cat "$DT_TMP"/txlog.* 2>/dev/null | awk '{print $1}' | sort -u | grep -c . || true)
dt_check "every one of the $CLIENTS clients committed transactions (${processed:-no} in all, by $clients_done clients)" \
  test "${processed:-0}" -ge "$CLIENTS" -a "$clients_done" -eq "$CLIENTS"
dt_check "no failed transactions (got ${failed:-none})" test "${failed:-x}" = 0
dt_check "every client kept going (no 'aborted' client)" \
  bash -c "! grep -qiE 'client [0-9]+ aborted|connection to database .* failed' '$DT_TMP/pgbench.log'"
dt_check_cap "$CAP" "$CLIENTS"

# The accounts' balances moved by exactly what pgbench's history says: every
# committed transaction happened once, on one session.
sums=$(dt_psql_direct -Atc "select (select sum(abalance) from pgbench_accounts) = (select coalesce(sum(delta), 0) from pgbench_history), (select count(*) from pgbench_history)")
dt_check "balances match the history of the $processed transactions (got $sums)" \
  test "$sums" = "t|$processed"

if dt_dropin; then
  n=$(dt_pool_field sup bench checked_out)
  dt_check "forkpoolctl: 0 connections checked out after pgbench (got $n)" test "$n" = 0
fi
dt_stop sup
n=$(dt_backends "$APP")
dt_check "no backend of the pool is left after forkpoold stops (got $n)" test "$n" = 0
dt_psql_direct -c "drop table pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers"
dt_finish
