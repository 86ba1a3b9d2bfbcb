#!/usr/bin/env bash
# shellcheck disable=SC2034  # PROG, OS_USER and MARKER are scratch-lib.sh's
# scratch-mariadb.sh — start and stop a throwaway MariaDB server in a directory.
#
#   scratch-mariadb.sh start DIR   mariadb-install-db into DIR/data, start a
#                                  server listening on 127.0.0.1:<free port>
#                                  and on the Unix socket DIR/mysqld.sock,
#                                  create user "forkpool" (all privileges,
#                                  password "forkpool-test-pw", from
#                                  localhost and 127.0.0.1) and database
#                                  "forkpool_test", and write DIR/env
#                                  (sourceable shell, see below).
#   scratch-mariadb.sh stop DIR    stop that server and remove DIR.
#   scratch-mariadb.sh restart DIR [fast|immediate]
#                                  stop that server (fast: SIGTERM, a clean
#                                  shutdown, the default; immediate: SIGKILL,
#                                  crash recovery at the next start) and start
#                                  it again on the same port and socket;
#                                  DIR/env stays valid.
#
# DIR/env exports FORKPOOL_TEST_MY_URL (mysql:// over the Unix socket),
# FORKPOOL_TEST_MY_TCP_URL (mysql:// over 127.0.0.1), FORKPOOL_TEST_MY_SOCKET,
# FORKPOOL_TEST_MY_PORT, FORKPOOL_TEST_MY_USER, FORKPOOL_TEST_MY_PASSWORD and
# FORKPOOL_TEST_MY_DATABASE.
#
# The server reads no option file (--no-defaults). When run as root, DIR is
# handed to the "mysql" system user (created if missing) and the server runs
# as that user, so DIR and all its parents must be traversable by it. The
# server's own root account authenticates by Unix socket credentials only
# (the user who ran this script).
#
# Environment: SCRATCH_MARIADB_BINDIR overrides the directory holding
# mariadbd (default: found on PATH, /usr/sbin, /usr/libexec).
# Quiet on success apart from a one-line summary on start.
set -euo pipefail

PROG=scratch-mariadb.sh
OS_USER=mysql                # system user that runs the server when we are root
TEST_USER=forkpool
TEST_PASSWORD=forkpool-test-pw
TEST_DB=forkpool_test
MARKER=.scratch-mariadb      # marks a directory this script may delete
START_ATTEMPTS=5
START_WAIT_S=60
# shellcheck source=contrib/scratch-lib.sh disable=SC1091
source "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/scratch-lib.sh"

# The caller's client environment must not leak into the commands we run.
unset MYSQL_HOST MYSQL_TCP_PORT MYSQL_UNIX_PORT MYSQL_PWD MYSQL_HOME MARIADB_HOME || true

find_server() {
  local d
  if [[ -n ${SCRATCH_MARIADB_BINDIR:-} ]]; then
    [[ -x $SCRATCH_MARIADB_BINDIR/mariadbd ]] ||
      die "SCRATCH_MARIADB_BINDIR=$SCRATCH_MARIADB_BINDIR has no mariadbd"
    echo "$SCRATCH_MARIADB_BINDIR/mariadbd"
    return
  fi
  if command -v mariadbd >/dev/null 2>&1; then command -v mariadbd; return; fi
  for d in /usr/sbin /usr/libexec /usr/local/sbin; do
    if [[ -x $d/mariadbd ]]; then echo "$d/mariadbd"; return; fi
  done
  die "no MariaDB server found (need mariadbd; install the 'mariadb-server' package or set SCRATCH_MARIADB_BINDIR)"
}

find_tool() {
  local name=$1
  command -v "$name" >/dev/null 2>&1 || die "$name not found (install the 'mariadb-server' and 'mariadb-client' packages)"
  command -v "$name"
}

# The pid of the server started in DIR, if it is running.
server_pid() {
  local pid
  [[ -f $DIR/mariadbd.pid ]] || return 1
  pid=$(cat "$DIR/mariadbd.pid" 2>/dev/null || true)
  [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

# Whether process PID is gone (a zombie is: it holds no file any more).
process_gone() {
  local state
  kill -0 "$1" 2>/dev/null || return 0
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null || true)
  [[ -z $state || $state == Z ]]
}

# Stop the server in DIR: SIGTERM (a clean shutdown), then SIGKILL after 60 s;
# with "immediate", SIGKILL at once (a crash).
stop_server() {
  local pid i
  pid=$(server_pid) || return 0
  if [[ ${1:-fast} == fast ]]; then
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
      process_gone "$pid" && return 0
      sleep 0.1
    done
    echo "$PROG: warning: MariaDB (pid $pid) did not stop in 60 s; killing it" >&2
  fi
  kill -KILL "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    process_gone "$pid" && return 0
    sleep 0.1
  done
  return 1
}

# Starts the server in the background on port $1 (detached: its own session,
# no terminal; started as root, mariadbd drops to --user itself) and waits
# until it answers. Returns 1 if it exited or did not answer in time.
launch_server() {
  local port=$1 i
  local user_opt=()
  [[ -n $RUN_AS ]] && user_opt=(--user="$RUN_AS")
  (cd "$DIR" && exec setsid "$SERVER" --no-defaults --datadir="$DATA" "${user_opt[@]}" \
    --socket="$SOCK" --port="$port" --bind-address=127.0.0.1 \
    --pid-file="$DIR/mariadbd.pid" --log-error="$LOG" \
    --skip-name-resolve --max-connections=300 --skip-log-bin \
    --character-set-server=utf8mb4 --collation-server=utf8mb4_general_ci \
    --innodb-buffer-pool-size=64M --innodb-flush-log-at-trx-commit=0 \
    --innodb-doublewrite=0 --skip-ssl \
    </dev/null >>"$DIR/mariadbd.out" 2>&1) &
  for ((i = 0; i < START_WAIT_S * 10; i++)); do
    if admin_sql -e 'SELECT 1' >/dev/null 2>&1; then return 0; fi
    # Exited? (a port taken in the meantime, or a real failure)
    if ! jobs -pr | grep -q .; then return 1; fi
    sleep 0.1
  done
  return 1
}

STARTED=0
STARTED_OK=0
cleanup_failed_start() {
  if [[ $STARTED -eq 1 && $STARTED_OK -eq 0 ]]; then
    stop_server || true
  fi
}

# Client command over the server's socket as the server's root account
# (authenticated by our Unix credentials).
admin_sql() {
  "$CLIENT" --no-defaults --skip-ssl --protocol=socket -S "$SOCK" -u "$ROOT_ACCOUNT" "$@"
}

cmd_start() {
  local install
  SERVER=$(find_server)
  install=$(find_tool mariadb-install-db)
  CLIENT=$(find_tool mariadb)

  SOCK=$DIR/mysqld.sock
  if (( ${#SOCK} > 100 )); then
    die "$DIR is too long for a Unix socket path (max 88 characters)"
  fi

  prepare_dir MariaDB
  ROOT_ACCOUNT=$(id -un)

  DATA=$DIR/data
  LOG=$DIR/mariadb.log

  local user_opt=()
  [[ -n $RUN_AS ]] && user_opt=(--user="$RUN_AS")
  # A second attempt on a fresh data directory: on a heavily loaded machine the
  # bootstrap server has been seen to fail once and then succeed.
  local installed=0 try
  for try in 1 2; do
    if as_server "$install" --no-defaults --datadir="$DATA" "${user_opt[@]}" \
         --auth-root-authentication-method=socket --auth-root-socket-user="$ROOT_ACCOUNT" \
         --skip-test-db --skip-name-resolve >"$DIR/install.log" 2>&1; then
      installed=1
      break
    fi
    ((try == 1)) && echo "scratch-mariadb.sh: mariadb-install-db failed; trying once more" >&2
    rm -rf -- "$DATA"
  done
  if ((installed == 0)); then
    log_tail "$DIR/install.log"
    die "mariadb-install-db failed twice (log: $DIR/install.log)"
  fi

  trap cleanup_failed_start EXIT
  local attempt port logsize newlog ok=0
  for ((attempt = 1; attempt <= START_ATTEMPTS; attempt++)); do
    port=$(pick_port)
    logsize=$(stat -c %s "$LOG" 2>/dev/null || echo 0)
    STARTED=1
    if launch_server "$port"; then ok=1; break; fi
    newlog=$(tail -c +"$((logsize + 1))" "$LOG" 2>/dev/null || true)
    stop_server || true
    wait 2>/dev/null || true
    if grep -qE "Can't start server: Bind on TCP/IP port|Address already in use" <<<"$newlog"; then
      continue
    fi
    log_tail "$LOG"
    log_tail "$DIR/mariadbd.out"
    die "MariaDB failed to start (log: $LOG)"
  done
  if [[ $ok -ne 1 ]]; then
    log_tail "$LOG"
    die "MariaDB failed to start: port already in use in $START_ATTEMPTS attempts (log: $LOG)"
  fi

  if ! admin_sql >"$DIR/setup.log" 2>&1 <<EOF
CREATE USER '$TEST_USER'@'localhost' IDENTIFIED BY '$TEST_PASSWORD';
CREATE USER '$TEST_USER'@'127.0.0.1' IDENTIFIED BY '$TEST_PASSWORD';
GRANT ALL PRIVILEGES ON *.* TO '$TEST_USER'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '$TEST_USER'@'127.0.0.1' WITH GRANT OPTION;
CREATE DATABASE $TEST_DB CHARACTER SET utf8mb4;
EOF
  then
    log_tail "$DIR/setup.log"
    die "could not create user '$TEST_USER' / database '$TEST_DB'"
  fi

  local qdir
  qdir=$(shquote "$DIR")
  {
    echo "# Generated by scratch-mariadb.sh; source this file."
    echo "export FORKPOOL_TEST_MY_URL=$(shquote "mysql://$TEST_USER:$TEST_PASSWORD@localhost/$TEST_DB?unix_socket=$(urlencode "$SOCK")")"
    echo "export FORKPOOL_TEST_MY_TCP_URL=$(shquote "mysql://$TEST_USER:$TEST_PASSWORD@127.0.0.1:$port/$TEST_DB")"
    echo "export FORKPOOL_TEST_MY_SOCKET=$(shquote "$SOCK")"
    echo "export FORKPOOL_TEST_MY_PORT=$port"
    echo "export FORKPOOL_TEST_MY_USER=$TEST_USER"
    echo "export FORKPOOL_TEST_MY_PASSWORD=$TEST_PASSWORD"
    echo "export FORKPOOL_TEST_MY_DATABASE=$TEST_DB"
    echo "export FORKPOOL_TEST_MY_DIR=$qdir"
  } | write_env

  STARTED_OK=1
  trap - EXIT
  local version
  version=$("$SERVER" --version 2>/dev/null | sed -n 's/.*Ver \([^ ]*\).*/\1/p')
  echo "scratch-mariadb: MariaDB ${version:-?} ready in $DIR (127.0.0.1:$port and Unix socket; source $DIR/env)"
}

cmd_stop() {
  may_remove_dir || return 0
  stop_server || die "could not stop MariaDB in $DIR (log: $DIR/mariadb.log)"
  rm -rf -- "$DIR"
}

cmd_restart() {
  local port
  [[ -e $DIR/$MARKER && -d $DIR/data ]] ||
    die "$DIR has no scratch server (run '$PROG start $DIR' first)"
  port=$(sed -n 's/^export FORKPOOL_TEST_MY_PORT=//p' "$DIR/env" 2>/dev/null || true)
  [[ $port =~ ^[0-9]+$ ]] || die "$DIR/env names no port"
  SERVER=$(find_server)
  CLIENT=$(find_tool mariadb)
  SOCK=$DIR/mysqld.sock
  DATA=$DIR/data
  LOG=$DIR/mariadb.log
  ROOT_ACCOUNT=$(id -un)
  if is_root; then
    RUN_AS=$(stat -c %U "$DATA")
    [[ $RUN_AS != root ]] || RUN_AS=
  fi
  stop_server "$MODE" || die "could not stop MariaDB in $DIR (log: $LOG)"
  if ! launch_server "$port"; then
    log_tail "$LOG"
    die "MariaDB did not restart (log: $LOG)"
  fi
}

scratch_main "$@"
