#!/usr/bin/env bash
# shellcheck disable=SC2034  # PROG, OS_USER and MARKER are scratch-lib.sh's
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
OS_USER=postgres             # system user that runs the server when we are root
BOOTSTRAP_ROLE=postgres      # initdb's bootstrap superuser
TEST_ROLE=forkpool
TEST_PASSWORD=forkpool-test-pw
TEST_DB=forkpool_test
MARKER=.scratch-pg           # marks a directory this script may delete
START_ATTEMPTS=5
# shellcheck source=contrib/scratch-lib.sh disable=SC1091
source "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/scratch-lib.sh"

# Do not let the caller's libpq environment (PGHOST, PGSERVICE, PGOPTIONS, a
# previously sourced DIR/env, ...) leak into the commands we run.
while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^PG' || true)

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

# Write the per-attempt port setting (postgresql.conf includes this file).
write_port_conf() {
  printf 'port = %s\n' "$1" >"$DATA/scratch-port.conf"
  [[ -z $RUN_AS ]] || chown "$RUN_AS:" "$DATA/scratch-port.conf"
}

STARTED=0
STARTED_OK=0
cleanup_failed_start() {
  if [[ $STARTED -eq 1 && $STARTED_OK -eq 0 ]]; then
    as_server "$BINDIR/pg_ctl" -D "$DATA" stop -m immediate -w >/dev/null 2>&1 || true
  fi
}

cmd_start() {
  BINDIR=$(find_bindir)

  # Unix socket paths are limited to 107 bytes: DIR/.s.PGSQL.NNNNN
  if (( ${#DIR} + 17 > 107 )); then
    die "$DIR is too long for a Unix socket directory (max 90 characters)"
  fi

  prepare_dir PostgreSQL

  DATA=$DIR/data
  LOG=$DIR/postgres.log

  # initdb (quiet; its output goes to DIR/initdb.log).
  if ! as_server "$BINDIR/initdb" -D "$DATA" -U "$BOOTSTRAP_ROLE" -E UTF8 \
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
    if as_server "$BINDIR/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >"$DIR/pg_ctl.log" 2>&1; then
      ok=1
      break
    fi
    newlog=$(tail -c +"$((logsize + 1))" "$LOG" 2>/dev/null || true)
    if grep -qE 'could not bind|Address already in use|could not create any TCP/IP sockets' <<<"$newlog"; then
      as_server "$BINDIR/pg_ctl" -D "$DATA" stop -m immediate -w >/dev/null 2>&1 || true
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
  } | write_env

  STARTED_OK=1
  trap - EXIT
  local version
  version=$("$BINDIR/postgres" --version 2>/dev/null | awk '{print $3}')
  echo "scratch-pg: PostgreSQL ${version:-?} ready in $DIR (127.0.0.1:$port and Unix socket; source $DIR/env)"
}

cmd_stop() {
  may_remove_dir || return 0

  local data=$DIR/data
  if [[ -f $data/PG_VERSION ]]; then
    local owner
    owner=$(stat -c %U "$data")
    if is_root && [[ $owner != root ]]; then RUN_AS=$owner; fi
    BINDIR=$(find_bindir)
    if [[ -f $data/postmaster.pid ]]; then
      if ! as_server "$BINDIR/pg_ctl" -D "$data" stop -m fast -w -t 60 >/dev/null 2>&1; then
        # Still running? Try harder; a stale pid file is fine.
        if as_server "$BINDIR/pg_ctl" -D "$data" status >/dev/null 2>&1; then
          as_server "$BINDIR/pg_ctl" -D "$data" stop -m immediate -w -t 30 >/dev/null 2>&1 ||
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
  if ! as_server "$BINDIR/pg_ctl" -D "$data" -l "$DIR/postgres.log" -m "$MODE" -w -t 60 restart \
         >"$DIR/pg_ctl.log" 2>&1; then
    log_tail "$DIR/postgres.log"
    log_tail "$DIR/pg_ctl.log"
    die "PostgreSQL did not restart (log: $DIR/postgres.log)"
  fi
}

scratch_main "$@"
