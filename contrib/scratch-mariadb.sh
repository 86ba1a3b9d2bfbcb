#!/usr/bin/env bash
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
MY_OS_USER=mysql             # system user that runs the server when we are root
TEST_USER=forkpool
TEST_PASSWORD=forkpool-test-pw
TEST_DB=forkpool_test
MARKER=.scratch-mariadb      # marks a directory this script may delete
START_ATTEMPTS=5
START_WAIT_S=60

die() { echo "$PROG: error: $*" >&2; exit 1; }

usage() {
  echo "usage: $PROG start DIR | $PROG stop DIR | $PROG restart DIR [fast|immediate]" >&2
  exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# The caller's client environment must not leak into the commands we run.
unset MYSQL_HOST MYSQL_TCP_PORT MYSQL_UNIX_PORT MYSQL_PWD MYSQL_HOME MARIADB_HOME || true

RUN_AS=
as_my() {
  if [[ -n $RUN_AS ]]; then
    (cd "$DIR" && runuser -u "$RUN_AS" -- "$@")
  else
    (cd "$DIR" && "$@")
  fi
}

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

# Print a TCP port on 127.0.0.1 that is free right now; start_server retries
# if another process takes it first.
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

shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

ensure_os_user() {
  getent passwd "$MY_OS_USER" >/dev/null && return
  if command -v adduser >/dev/null 2>&1; then
    adduser --system --group --quiet --no-create-home --home /nonexistent \
            --shell /usr/sbin/nologin "$MY_OS_USER" >/dev/null ||
      die "could not create system user '$MY_OS_USER' with adduser"
  else
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$MY_OS_USER" ||
      die "could not create system user '$MY_OS_USER' with useradd"
  fi
}

check_traversable() {
  local a=$DIR
  runuser -u "$RUN_AS" -- test -x "$DIR" -a -w "$DIR" 2>/dev/null && return 0
  local chain=()
  while :; do
    chain=("$a" "${chain[@]}")
    [[ $a == / ]] && break
    a=$(dirname "$a")
  done
  for a in "${chain[@]}"; do
    if ! runuser -u "$RUN_AS" -- test -x "$a" 2>/dev/null; then
      echo "$a (mode 0$(stat -c %a "$a"), owner $(stat -c %U "$a")) is not traversable by user '$RUN_AS', which must run MariaDB as we are root; put DIR where every parent is world-searchable (e.g. under /tmp)"
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
  "$CLIENT" --no-defaults --protocol=socket -S "$SOCK" -u "$ROOT_ACCOUNT" "$@"
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
  fi
  chmod 0755 "$DIR"
  touch "$DIR/$MARKER"

  ROOT_ACCOUNT=$(id -un)
  if is_root; then
    command -v runuser >/dev/null 2>&1 || die "runuser not found (install util-linux)"
    RUN_AS=$MY_OS_USER
    ensure_os_user
    chown "$RUN_AS:" "$DIR" "$DIR/$MARKER"
    local why
    if ! why=$(check_traversable); then
      rm -f "$DIR/$MARKER"
      rmdir "$DIR" 2>/dev/null || true
      die "$why"
    fi
  fi

  DATA=$DIR/data
  LOG=$DIR/mariadb.log

  local user_opt=()
  [[ -n $RUN_AS ]] && user_opt=(--user="$RUN_AS")
  # A second attempt on a fresh data directory: on a heavily loaded machine the
  # bootstrap server has been seen to fail once and then succeed.
  local installed=0 try
  for try in 1 2; do
    if as_my "$install" --no-defaults --datadir="$DATA" "${user_opt[@]}" \
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
  } >"$DIR/env.tmp"
  chmod 0644 "$DIR/env.tmp"
  mv -f "$DIR/env.tmp" "$DIR/env"

  STARTED_OK=1
  trap - EXIT
  local version
  version=$("$SERVER" --version 2>/dev/null | sed -n 's/.*Ver \([^ ]*\).*/\1/p')
  echo "scratch-mariadb: MariaDB ${version:-?} ready in $DIR (127.0.0.1:$port and Unix socket; source $DIR/env)"
}

cmd_stop() {
  [[ -e $DIR ]] || return 0       # nothing to do: stop is idempotent
  [[ -d $DIR ]] || die "$DIR is not a directory"
  if [[ ! -e $DIR/$MARKER ]]; then
    rmdir "$DIR" 2>/dev/null && return 0
    die "$DIR was not created by $PROG (no $MARKER file); not removing it"
  fi
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
