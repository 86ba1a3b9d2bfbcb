#!/usr/bin/env bash
# dropin/bad-input — what the drop-in refuses, and what it cannot reach, each
# a clean connect error (psql: exit status 2; psycopg2: OperationalError)
# whose message contains "forkpool:" and names the reason; never a crash or a
# hang (every client runs under timeout):
#   sslmode=require, sslmode=verify-full, gssencmode=require,
#   replication=database, a user other than the pool's, a pool that does not
#   exist, a directory whose forkpool.sock is dead, a uid the supervisor does
#   not allow (globally: the socket's permissions; per pool: allow_users), a
#   database that is down (the pool's URL names a port where nothing listens),
#   a pool with no connection free within connect_timeout; and pg_isready
#   (PQpingParams) on a pool, an unknown pool, a dead socket, a refused conninfo.
# A directory with no forkpool.sock is not the drop-in's: a plain libpq error.
# Controls: the same pool, the same users, do connect when nothing is wrong.
#
# --direct runs the same conninfos straight at the server, which fails or
# succeeds on its own terms (said per case: over a Unix socket libpq does not
# try SSL, so sslmode passes there); the "forkpool" texts are checked
# with the drop-in only.
# shellcheck disable=SC2016 # the bash -c scripts take their arguments as $1, $2
# shellcheck source=tests/dropin/lib.sh
. "$(dirname "$0")/lib.sh"
dt_init "$@"

OTHER=nobody
[[ $(id -u) -eq 0 ]] || dt_die "needs root: clients run as nobody with runuser"
getent passwd "$OTHER" >/dev/null || dt_die "no user $OTHER"
OTHER_GROUP=$(id -gn "$OTHER")
DEADPORT=$(dt_free_port)
DIRECT_BASE="host=$FORKPOOL_TEST_PG_SOCKET_DIR port=$FORKPOOL_TEST_PG_PORT dbname=$PGDATABASE user=$PGUSER"

# sup: OTHER may reach the socket (its group), but not the pool "locked".
dt_global sup "allow_groups = $OTHER_GROUP"
dt_pool sup main pool_size=1 max_overflow=0 pool_timeout=30
dt_pool sup locked pool_size=1 max_overflow=0 allow_users=root
dt_pool sup offline --url "postgresql://$PGUSER@127.0.0.1:$DEADPORT/$PGDATABASE?application_name=$(dt_app sup offline)" \
  --direct "host=127.0.0.1 port=$DEADPORT dbname=$PGDATABASE user=$PGUSER" \
  pool_size=1 max_overflow=0 pool_timeout=5 connect_timeout=3
dt_start sup
# closed: only root (allow_users = root): OTHER cannot even open the socket.
dt_global closed "allow_users = root"
dt_pool closed main pool_size=1 max_overflow=0
dt_start closed

EMPTY=$DT_TMP/empty
mkdir -m 0755 "$EMPTY"
DEAD=$DT_TMP/dead
mkdir -m 0755 "$DEAD"
"$DT_PY" -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.bind(sys.argv[1])
s.close()' "$DEAD/forkpool.sock"
[[ -S $DEAD/forkpool.sock ]] || dt_die "could not make a dead socket"

# try USER CONNINFO: runs psql and psycopg2; sets PSQL_RC PSQL_OUT PSQL_S PY_OUT PY_S
try() {
  local user=$1 ci=$2 t0
  local -a runner=(dt_run)
  [[ $user == root ]] || runner=(dt_run_as "$user")
  t0=$SECONDS
  PSQL_RC=0
  PSQL_OUT=$("${runner[@]}" timeout 10 psql -X -At -c 'select 6 * 7' "$ci" 2>&1) || PSQL_RC=$?
  PSQL_S=$((SECONDS - t0))
  t0=$SECONDS
  PY_OUT=$("${runner[@]}" timeout 10 "$DT_PY" -c '
import sys, psycopg2
try:
    c = psycopg2.connect(sys.argv[1])
except psycopg2.OperationalError as e:
    print("OperationalError:", str(e).strip().replace("\n", " / "))
else:
    cur = c.cursor()
    cur.execute("select 6 * 7")
    print("connected:", cur.fetchone()[0])
    c.close()' "$ci" 2>"$DT_TMP/py.err") || PY_OUT+=" [exit status $?]"
  # Whatever else it wrote (a traceback, a warning) is shown, not parsed.
  if [[ -s $DT_TMP/py.err ]]; then PY_OUT+=" [stderr: $(tr '\n' ' ' <"$DT_TMP/py.err")]"; fi
  PY_S=$((SECONDS - t0))
  PSQL_OUT=${PSQL_OUT//$'\n'/ / }
}

# refused DESC USER CONNINFO REGEX DIRECT(fail|ok)
#   --dropin: both clients fail cleanly, at once, and the message has
#   "forkpool" and matches REGEX.  --direct: DIRECT says what the server does.
refused() {
  local desc=$1 user=$2 ci=$3 re=$4 direct=$5
  try "$user" "$ci"
  echo "  [$desc] psql ($PSQL_RC, ${PSQL_S}s): $PSQL_OUT"
  echo "  [$desc] psycopg2 (${PY_S}s): $PY_OUT"
  if dt_dropin || [[ $direct == fail ]]; then
    dt_check "$desc: psql fails to connect (status 2, got $PSQL_RC) within 10 s" \
      test "$PSQL_RC" -eq 2 -a "$PSQL_S" -lt 10
    dt_check "$desc: psycopg2 raises OperationalError within 10 s" \
      test "${PY_OUT#OperationalError: }" != "$PY_OUT" -a "$PY_S" -lt 10
  else
    dt_check "$desc: direct, the server accepts it" test "$PSQL_RC" -eq 0 -a "$PSQL_OUT" = 42
  fi
  if dt_dropin && [[ -n $re ]]; then
    dt_check "$desc: psql's message says forkpool: and /$re/" \
      bash -c 'grep -q "forkpool:" <<<"$1" && grep -qiE "$2" <<<"$1"' _ "$PSQL_OUT" "$re"
    dt_check "$desc: psycopg2's message says forkpool: and /$re/" \
      bash -c 'grep -q "forkpool:" <<<"$1" && grep -qiE "$2" <<<"$1"' _ "$PY_OUT" "$re"
  fi
}

works() { # DESC USER CONNINFO
  try "$2" "$3"
  echo "  [$1] psql ($PSQL_RC): $PSQL_OUT; psycopg2: $PY_OUT"
  dt_check "$1: psql connects and runs a query" test "$PSQL_RC" -eq 0 -a "$PSQL_OUT" = 42
  dt_check "$1: psycopg2 connects and runs a query" test "${PY_OUT%% \[stderr: *}" = "connected: 42"
}

MAIN=$(dt_conninfo sup main)
works "control: root, pool main" root "$MAIN"
works "control: $OTHER, pool main" "$OTHER" "$MAIN"

refused "sslmode=require" root "$MAIN sslmode=require" 'sslmode' ok
refused "sslmode=verify-full" root "$MAIN sslmode=verify-full" 'sslmode' ok
refused "gssencmode=require" root "$MAIN gssencmode=require" 'gssencmode' fail
refused "replication=database" root "$MAIN replication=database" 'replication' ok
if dt_dropin; then
  USERCI="host=$(dt_dir sup) dbname=main user=dt_someone_else"
  NOPOOL="host=$(dt_dir sup) dbname=dt_no_such_pool user=$PGUSER"
else
  USERCI="$DIRECT_BASE user=dt_someone_else"
  NOPOOL="host=$FORKPOOL_TEST_PG_SOCKET_DIR port=$FORKPOOL_TEST_PG_PORT dbname=dt_no_such_pool user=$PGUSER"
fi
refused "a user other than the pool's" root "$USERCI" 'dt_someone_else' fail
refused "a pool that does not exist" root "$NOPOOL" 'dt_no_such_pool' fail
refused "forkpool.sock is dead" root "host=$DEAD dbname=main user=$PGUSER" \
  'no forkpoold|refused|not running' fail
refused "$OTHER not allowed by the pool (allow_users = root)" "$OTHER" "$(dt_conninfo sup locked)" \
  'not allowed|may not|permission|denied' ok
refused "$OTHER not allowed by forkpoold (allow_users = root)" "$OTHER" "$(dt_conninfo closed main)" \
  'not allowed|may not|permission|denied' ok
refused "the pool's database is down" root "$(dt_conninfo sup offline)" \
  'refused|could not connect|unreachable|reach' fail

# A directory with no forkpool.sock: not a forkpool address, plain libpq.
try root "host=$EMPTY dbname=main user=$PGUSER"
echo "  [no socket] psql ($PSQL_RC): $PSQL_OUT; psycopg2: $PY_OUT"
dt_check "no forkpool.sock: psql fails to connect like libpq does (status $PSQL_RC)" \
  test "$PSQL_RC" -eq 2
dt_check "no forkpool.sock: the message is libpq's ($PSQL_OUT)" \
  bash -c 'grep -qE "No such file or directory|could not connect|connection to server" <<<"$1"' _ "$PSQL_OUT"

# PQpingParams, as pg_isready uses it: 0 accepting, 1 rejecting, 2 no
# response, 3 no attempt (a conninfo the drop-in refuses).
isready() { # DESC CONNINFO WANT-DROPIN WANT-DIRECT
  local rc=0 want=$3 out
  dt_dropin || want=$4
  out=$(dt_run timeout 10 pg_isready -d "$2" 2>&1) || rc=$?
  dt_check "pg_isready, $1: exit status $want (got $rc: $out)" test "$rc" -eq "$want"
}
isready "pool main" "$MAIN" 0 0
isready "a pool that does not exist" "$NOPOOL" 1 0
isready "forkpool.sock is dead" "host=$DEAD dbname=main user=$PGUSER" 2 2
isready "sslmode=require" "$MAIN sslmode=require" 3 0

# No connection free: the only one is held by another client; connect_timeout
# is the acquire timeout.
dt_run timeout 60 psql -X -At -c 'select pg_sleep(8)' "$MAIN" >"$DT_TMP/holder.out" 2>&1 &
HOLDER=$!
dt_bg "$HOLDER"
for ((i = 0; i < 50; i++)); do
  [[ $(dt_psql_direct -Atc "select count(*) from pg_stat_activity where query = 'select pg_sleep(8)'") -ge 1 ]] && break
  sleep 0.1
done
if dt_dropin; then
  refused "no connection free within connect_timeout=2" root "$MAIN connect_timeout=2" \
    'no connection free|timed out|timeout' fail
  dt_check "and it gave up after about 2 s, not 30 (psql ${PSQL_S}s, psycopg2 ${PY_S}s)" \
    test "$PSQL_S" -le 6 -a "$PY_S" -le 6
else
  refused "no connection free (direct: no pool, it connects)" root "$MAIN connect_timeout=2" '' ok
fi
wait "$HOLDER" || dt_fail "the client holding the connection ends well ($(cat "$DT_TMP/holder.out"))"
works "control: root, pool main, after all that" root "$MAIN"

dt_check "forkpoold sup is still running" kill -0 "${DT_SUP_PID[sup]}"
dt_check "forkpoold closed is still running" kill -0 "${DT_SUP_PID[closed]}"
dt_stop sup
dt_stop closed
dt_finish
