#!/usr/bin/env bash
# scratch-pg.sh — start and stop a throwaway PostgreSQL server in a directory.
#
#   scratch-pg.sh start DIR   initdb into DIR/data, start a server listening on
#                             127.0.0.1:<free port> and on a Unix socket in DIR,
#                             create role "forkpool" (SUPERUSER, password
#                             "forkpool-test-pw") and database "forkpool_test",
#                             and write DIR/env (sourceable shell, see below).
#   scratch-pg.sh stop DIR    stop that server (fast shutdown) and remove DIR.
#   scratch-pg.sh restart DIR [fast|immediate]
#                             stop that server (fast shutdown, the default, or
#                             immediate: no checkpoint, crash recovery at the
#                             next start) and start it again, on the same
#                             port and socket; DIR/env stays valid.
#
# DIR/env exports PGHOST, PGPORT, PGUSER, PGDATABASE, FORKPOOL_TEST_PG_URL
# (Unix socket, trust auth), FORKPOOL_TEST_PG_TCP_URL (127.0.0.1, scram-sha-256
# password auth), FORKPOOL_TEST_PG_SOCKET_DIR and FORKPOOL_TEST_PG_PORT.
#
# PostgreSQL refuses to run as root: when run as root, DIR is handed to the
# "postgres" system user (created if missing) and the server runs as that user,
# so DIR and all its parents must be traversable by it.
#
# Environment: SCRATCH_PG_BINDIR overrides the PostgreSQL bin directory.
# Quiet on success apart from a one-line summary on start.
set -euo pipefail

PROG=scratch-pg.sh
PG_OS_USER=postgres          # system user that runs the server when we are root
BOOTSTRAP_ROLE=postgres      # initdb's bootstrap superuser
TEST_ROLE=forkpool
TEST_PASSWORD=forkpool-test-pw
TEST_DB=forkpool_test
MARKER=.scratch-pg           # marks a directory this script may delete
START_ATTEMPTS=5

die() { echo "$PROG: error: $*" >&2; exit 1; }

usage() {
  echo "usage: $PROG start DIR | $PROG stop DIR | $PROG restart DIR [fast|immediate]" >&2
  exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Do not let the caller's libpq environment (PGHOST, PGSERVICE, PGOPTIONS, a
# previously sourced DIR/env, ...) leak into the commands we run.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^PG' || true)

# Run a PostgreSQL command as the user that owns the cluster. $RUN_AS is empty
# when we run as ourselves. Runs from DIR so that a 0700 cwd (e.g. /root) does
# not produce "could not change directory" noise.
RUN_AS=
as_pg() {
  if [[ -n $RUN_AS ]]; then
    (cd "$DIR" && runuser -u "$RUN_AS" -- "$@")
  else
    (cd "$DIR" && "$@")
  fi
}

find_bindir() {
  local d
  if [[ -n ${SCRATCH_PG_BINDIR:-} ]]; then
    [[ -x $SCRATCH_PG_BINDIR/initdb && -x $SCRATCH_PG_BINDIR/pg_ctl ]] ||
      die "SCRATCH_PG_BINDIR=$SCRATCH_PG_BINDIR has no initdb/pg_ctl"
    echo "$SCRATCH_PG_BINDIR"
    return
  fi
  if command -v pg_config >/dev/null 2>&1; then
    d=$(pg_config --bindir 2>/dev/null || true)
    if [[ -n $d && -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
      echo "$d"
      return
    fi
  fi
  # Newest Debian-style installation.
  d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -type d -name bin 2>/dev/null |
        sort -V | tail -n 1 || true)
  if [[ -n $d && -x $d/initdb && -x $d/pg_ctl && -x $d/postgres ]]; then
    echo "$d"
    return
  fi
  die "no PostgreSQL server binaries found (need initdb, pg_ctl, postgres; install the 'postgresql' package or set SCRATCH_PG_BINDIR)"
}

# Print a TCP port on 127.0.0.1 that is free right now. Another process may
# still grab it before the server binds it; start_server() retries for that.
pick_port() {
  local p i
  if command -v python3 >/dev/null 2>&1; then
    p=$(python3 -c 'import socket
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()' 2>/dev/null || true)
    if [[ $p =~ ^[0-9]+$ ]]; then echo "$p"; return; fi
  fi
  for ((i = 0; i < 100; i++)); do
    p=$((20000 + RANDOM % 30000))
    if ! command -v ss >/dev/null 2>&1 || [[ -z $(ss -Htln "sport = :$p" 2>/dev/null) ]]; then
      echo "$p"
      return
    fi
  done
  die "could not find a free TCP port"
}

# Percent-encode a string for use in a URL query value (keeps '/').
urlencode() {
  local s=$1 out='' c i
  local LC_ALL=C
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9/._~-]) out+=$c ;;
      *) out+=$(printf '%%%02X' "'$c") ;;
    esac
  done
  printf '%s' "$out"
}

# Single-quote a string for the shell.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

ensure_pg_os_user() {
  getent passwd "$PG_OS_USER" >/dev/null && return
  if command -v adduser >/dev/null 2>&1; then
    adduser --system --group --quiet --no-create-home --home /nonexistent \
            --shell /usr/sbin/nologin "$PG_OS_USER" >/dev/null ||
      die "could not create system user '$PG_OS_USER' with adduser"
  else
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$PG_OS_USER" ||
      die "could not create system user '$PG_OS_USER' with useradd"
  fi
}

# Check that $RUN_AS can reach DIR (it cannot when DIR is under a 0700
# directory); if not, print why and return 1.
check_traversable() {
  local a=$DIR
  runuser -u "$RUN_AS" -- test -x "$DIR" -a -w "$DIR" 2>/dev/null && return 0
  # Find the first ancestor that blocks it, to say exactly what is wrong.
  local chain=()
  while :; do
    chain=("$a" "${chain[@]}")
    [[ $a == / ]] && break
    a=$(dirname "$a")
  done
  for a in "${chain[@]}"; do
    if ! runuser -u "$RUN_AS" -- test -x "$a" 2>/dev/null; then
      echo "$a (mode 0$(stat -c %a "$a"), owner $(stat -c %U "$a")) is not traversable by user '$RUN_AS', which must run PostgreSQL as we are root; put DIR where every parent is world-searchable (e.g. under /tmp)"
      return 1
    fi
  done
  echo "$DIR is not writable by user '$RUN_AS'"
  return 1
}

log_tail() {
  local f=$1
  [[ -s $f ]] || return 0
  echo "$PROG: --- last lines of $f ---" >&2
  tail -n 20 "$f" >&2
  echo "$PROG: ---" >&2
}

# Write the per-attempt port setting (postgresql.conf includes this file).
write_port_conf() {
  printf 'port = %s\n' "$1" >"$DATA/scratch-port.conf"
  [[ -z $RUN_AS ]] || chown "$RUN_AS:" "$DATA/scratch-port.conf"
}

CREATED_DIR=0
STARTED=0
STARTED_OK=0
cleanup_failed_start() {
  if [[ $STARTED -eq 1 && $STARTED_OK -eq 0 ]]; then
    as_pg "$BINDIR/pg_ctl" -D "$DATA" stop -m immediate -w >/dev/null 2>&1 || true
  fi
}

cmd_start() {
  BINDIR=$(find_bindir)

  # Unix socket paths are limited to 107 bytes: DIR/.s.PGSQL.NNNNN
  if (( ${#DIR} + 17 > 107 )); then
    die "$DIR is too long for a Unix socket directory (max 90 characters)"
  fi

  # Create DIR (mode 0755) or accept an existing empty / fresh directory.
  if [[ -e $DIR && ! -d $DIR ]]; then
    die "$DIR exists and is not a directory"
  fi
  if [[ -d $DIR/data ]]; then
    die "$DIR/data already exists (a scratch server is already set up there; run '$PROG stop $DIR' first)"
  fi
  if [[ -d $DIR ]]; then
    if [[ ! -e $DIR/$MARKER && -n $(ls -A "$DIR") ]]; then
      die "$DIR exists and is not empty"
    fi
  else
    mkdir -p "$(dirname "$DIR")"
    mkdir -m 0755 "$DIR"
    CREATED_DIR=1
  fi
  chmod 0755 "$DIR"
  touch "$DIR/$MARKER"

  if is_root; then
    command -v runuser >/dev/null 2>&1 || die "runuser not found (install util-linux)"
    RUN_AS=$PG_OS_USER
    ensure_pg_os_user
    chown "$RUN_AS:" "$DIR" "$DIR/$MARKER"
    local why
    if ! why=$(check_traversable); then
      # Leave nothing behind that we created.
      if [[ $CREATED_DIR -eq 1 ]]; then rm -f "$DIR/$MARKER"; rmdir "$DIR" 2>/dev/null || true; fi
      die "$why"
    fi
  fi

  DATA=$DIR/data
  LOG=$DIR/postgres.log

  # initdb (quiet; its output goes to DIR/initdb.log).
  if ! as_pg "$BINDIR/initdb" -D "$DATA" -U "$BOOTSTRAP_ROLE" -E UTF8 \
         --locale=C --auth=trust --no-sync >"$DIR/initdb.log" 2>&1; then
    log_tail "$DIR/initdb.log"
    die "initdb failed (log: $DIR/initdb.log)"
  fi

  cat >"$DATA/pg_hba.conf" <<'EOF'
# TYPE  DATABASE  USER  ADDRESS        METHOD
local   all       all                  trust
host    all       all   127.0.0.1/32   scram-sha-256
host    all       all   ::1/128        scram-sha-256
EOF
  cat >>"$DATA/postgresql.conf" <<EOF

# --- scratch-pg.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$(printf '%s' "$DIR" | sed "s/'/''/g")'
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
ssl = off
password_encryption = 'scram-sha-256'
logging_collector = off
log_destination = 'stderr'
include_if_exists = 'scratch-port.conf'
EOF
  [[ -z $RUN_AS ]] || chown "$RUN_AS:" "$DATA/pg_hba.conf" "$DATA/postgresql.conf"

  # Start on a free port; if someone grabs the port between picking and
  # binding, pick another and retry.
  trap cleanup_failed_start EXIT
  local attempt port logsize newlog ok=0
  for ((attempt = 1; attempt <= START_ATTEMPTS; attempt++)); do
    port=$(pick_port)
    write_port_conf "$port"
    logsize=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
    STARTED=1
    if as_pg "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >"$DIR/pg_ctl.log" 2>&1; then
      ok=1
      break
    fi
    newlog=$(tail -c +"$((logsize + 1))" "$LOG" 2>/dev/null || true)
    if grep -qE 'could not bind|Address already in use|could not create any TCP/IP sockets' <<<"$newlog"; then
      as_pg "$BINDIR/pg_ctl" -D "$DATA" stop -m immediate -w >/dev/null 2>&1 || true
      continue
    fi
    log_tail "$LOG"
    log_tail "$DIR/pg_ctl.log"
    die "PostgreSQL failed to start (log: $LOG)"
  done
  if [[ $ok -ne 1 ]]; then
    log_tail "$LOG"
    die "PostgreSQL failed to start: port already in use in $START_ATTEMPTS attempts (log: $LOG)"
  fi

  # Wait until it accepts connections (pg_ctl -w already did; belt and braces).
  local i
  for ((i = 0; i < 60; i++)); do
    "$BINDIR/pg_isready" -q -h "$DIR" -p "$port" -U "$BOOTSTRAP_ROLE" -d postgres && break
    sleep 0.5
  done
  "$BINDIR/pg_isready" -q -h "$DIR" -p "$port" -U "$BOOTSTRAP_ROLE" -d postgres ||
    { log_tail "$LOG"; die "PostgreSQL started but is not accepting connections (log: $LOG)"; }

  # Test role and database.
  if ! "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" \
         -U "$BOOTSTRAP_ROLE" -d postgres >"$DIR/setup.log" 2>&1 <<EOF
SET password_encryption = 'scram-sha-256';
CREATE ROLE $TEST_ROLE LOGIN SUPERUSER PASSWORD '$TEST_PASSWORD';
CREATE DATABASE $TEST_DB OWNER $TEST_ROLE;
EOF
  then
    log_tail "$DIR/setup.log"
    die "could not create role '$TEST_ROLE' / database '$TEST_DB'"
  fi

  # DIR/env, written atomically.
  local qdir
  qdir=$(shquote "$DIR")
  {
    echo "# Generated by scratch-pg.sh; source this file."
    echo "export PGHOST=$qdir"
    echo "export PGPORT=$port"
    echo "export PGUSER=$TEST_ROLE"
    echo "export PGDATABASE=$TEST_DB"
    echo "export FORKPOOL_TEST_PG_URL=$(shquote "postgresql://$TEST_ROLE@/$TEST_DB?host=$(urlencode "$DIR")&port=$port")"
    echo "export FORKPOOL_TEST_PG_TCP_URL=$(shquote "postgresql://$TEST_ROLE:$TEST_PASSWORD@127.0.0.1:$port/$TEST_DB")"
    echo "export FORKPOOL_TEST_PG_SOCKET_DIR=$qdir"
    echo "export FORKPOOL_TEST_PG_PORT=$port"
  } >"$DIR/env.tmp"
  chmod 0644 "$DIR/env.tmp"
  mv -f "$DIR/env.tmp" "$DIR/env"

  STARTED_OK=1
  trap - EXIT
  local version
  version=$("$BINDIR/postgres" --version 2>/dev/null | awk '{print $3}')
  echo "scratch-pg: PostgreSQL ${version:-?} ready in $DIR (127.0.0.1:$port and Unix socket; source $DIR/env)"
}

cmd_stop() {
  [[ -e $DIR ]] || return 0       # nothing to do: stop is idempotent
  [[ -d $DIR ]] || die "$DIR is not a directory"
  if [[ ! -e $DIR/$MARKER ]]; then
    # Refuse to rm -rf a directory we did not set up; an empty one is fine.
    rmdir "$DIR" 2>/dev/null && return 0
    die "$DIR was not created by $PROG (no $MARKER file); not removing it"
  fi

  local data=$DIR/data
  if [[ -f $data/PG_VERSION ]]; then
    local owner
    owner=$(stat -c %U "$data")
    if is_root && [[ $owner != root ]]; then RUN_AS=$owner; fi
    BINDIR=$(find_bindir)
    if [[ -f $data/postmaster.pid ]]; then
      if ! as_pg "$BINDIR/pg_ctl" -D "$data" stop -m fast -w -t 60 >/dev/null 2>&1; then
        # Still running? Try harder; a stale pid file is fine.
        if as_pg "$BINDIR/pg_ctl" -D "$data" status >/dev/null 2>&1; then
          as_pg "$BINDIR/pg_ctl" -D "$data" stop -m immediate -w -t 30 >/dev/null 2>&1 ||
            die "could not stop PostgreSQL in $data (log: $DIR/postgres.log)"
        fi
      fi
    fi
  fi
  rm -rf -- "$DIR"
}

cmd_restart() {
  local data=$DIR/data owner
  [[ -e $DIR/$MARKER && -f $data/PG_VERSION ]] ||
    die "$DIR has no scratch server (run '$PROG start $DIR' first)"
  owner=$(stat -c %U "$data")
  if is_root && [[ $owner != root ]]; then RUN_AS=$owner; fi
  BINDIR=$(find_bindir)
  # The port stays: it is in DATA/scratch-port.conf.
  if ! as_pg "$BINDIR/pg_ctl" -D "$data" -l "$DIR/postgres.log" -m "$MODE" -w -t 60 restart \
         >"$DIR/pg_ctl.log" 2>&1; then
    log_tail "$DIR/postgres.log"
    log_tail "$DIR/pg_ctl.log"
    die "PostgreSQL did not restart (log: $DIR/postgres.log)"
  fi
}

[[ $# -eq 2 || ($# -eq 3 && $1 == restart) ]] || usage
ACTION=$1
[[ -n $2 ]] || usage
DIR=$(realpath -m -- "$2")
[[ $DIR != / ]] || die "refusing to use / as the scratch directory"
MODE=${3:-fast}
[[ $MODE == fast || $MODE == immediate ]] || die "restart mode must be fast or immediate, not '$MODE'"

case $ACTION in
  start) cmd_start ;;
  stop) cmd_stop ;;
  restart) cmd_restart ;;
  *) usage ;;
esac
