#!/usr/bin/env bash
# scratch-lib.sh — what scratch-pg.sh and scratch-mariadb.sh share: their
# scratch directory (created, marked, removed), running a server's commands as
# its system user when started as root, a free port, quoting, and the command
# line. Sourced, never run; the sourcing script sets PROG (its name), MARKER
# (the file that marks a directory it may delete) and OS_USER (the system user
# that runs the server when we are root), and defines cmd_start, cmd_stop and
# cmd_restart (which reads $MODE: fast or immediate).

die() { echo "$PROG: error: $*" >&2; exit 1; }

usage() {
  echo "usage: $PROG start DIR | $PROG stop DIR | $PROG restart DIR [fast|immediate]" >&2
  exit 2
}

is_root() { [[ $(id -u) -eq 0 ]]; }

# Runs a server command as the user that owns the server's files ($RUN_AS;
# empty: ourselves), from DIR so that a 0700 cwd (e.g. /root) does not produce
# "could not change directory" noise.
RUN_AS=
as_server() {
  if [[ -n $RUN_AS ]]; then
    (cd "$DIR" && runuser -u "$RUN_AS" -- "$@")
  else
    (cd "$DIR" && "$@")
  fi
}

# Prints a TCP port on 127.0.0.1 that is free right now. Another process may
# still take it before the server binds it; the scripts retry for that.
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

# Percent-encodes a string for use in a URL query value (keeps '/').
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

# Single-quotes a string for the shell.
shquote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

ensure_os_user() {
  getent passwd "$OS_USER" >/dev/null && return
  if command -v adduser >/dev/null 2>&1; then
    adduser --system --group --quiet --no-create-home --home /nonexistent \
            --shell /usr/sbin/nologin "$OS_USER" >/dev/null ||
      die "could not create system user '$OS_USER' with adduser"
  else
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$OS_USER" ||
      die "could not create system user '$OS_USER' with useradd"
  fi
}

# check_traversable SERVER: whether $RUN_AS can reach DIR (it cannot when DIR
# is under a 0700 directory); if not, prints why and returns 1.
check_traversable() {
  local a=$DIR
  runuser -u "$RUN_AS" -- test -x "$DIR" -a -w "$DIR" 2>/dev/null && return 0
  # The first ancestor that blocks it, to say exactly what is wrong.
  local chain=()
  while :; do
    chain=("$a" "${chain[@]}")
    [[ $a == / ]] && break
    a=$(dirname "$a")
  done
  for a in "${chain[@]}"; do
    if ! runuser -u "$RUN_AS" -- test -x "$a" 2>/dev/null; then
      echo "$a (mode 0$(stat -c %a "$a"), owner $(stat -c %U "$a")) is not traversable by user '$RUN_AS', which must run $1 as we are root; put DIR where every parent is world-searchable (e.g. under /tmp)"
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

# prepare_dir SERVER: creates DIR (mode 0755) or accepts an existing empty or
# marked one, marks it, and, as root, hands it to OS_USER (RUN_AS), which must
# be able to reach it.
prepare_dir() {
  local created=0 why
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
    created=1
  fi
  chmod 0755 "$DIR"
  touch "$DIR/$MARKER"

  if is_root; then
    command -v runuser >/dev/null 2>&1 || die "runuser not found (install util-linux)"
    RUN_AS=$OS_USER
    ensure_os_user
    chown "$RUN_AS:" "$DIR" "$DIR/$MARKER"
    if ! why=$(check_traversable "$1"); then
      # Leave nothing behind that we created.
      if [[ $created -eq 1 ]]; then rm -f "$DIR/$MARKER"; rmdir "$DIR" 2>/dev/null || true; fi
      die "$why"
    fi
  fi
}

# write_env: DIR/env from the lines on stdin, atomically.
write_env() {
  cat >"$DIR/env.tmp"
  chmod 0644 "$DIR/env.tmp"
  mv -f "$DIR/env.tmp" "$DIR/env"
}

# may_remove_dir: true when DIR is one of ours to stop and remove; false when
# there is nothing to do (stop is idempotent). Refuses a directory we did not
# set up (an empty one is just removed).
may_remove_dir() {
  [[ -e $DIR ]] || return 1
  [[ -d $DIR ]] || die "$DIR is not a directory"
  if [[ ! -e $DIR/$MARKER ]]; then
    rmdir "$DIR" 2>/dev/null && return 1
    die "$DIR was not created by $PROG (no $MARKER file); not removing it"
  fi
  return 0
}

# scratch_main "$@": the command line, start DIR | stop DIR | restart DIR [MODE].
scratch_main() {
  [[ $# -eq 2 || ($# -eq 3 && $1 == restart) ]] || usage
  local action=$1
  [[ -n $2 ]] || usage
  DIR=$(realpath -m -- "$2")
  [[ $DIR != / ]] || die "refusing to use / as the scratch directory"
  MODE=${3:-fast}
  [[ $MODE == fast || $MODE == immediate ]] ||
    die "restart mode must be fast or immediate, not '$MODE'"
  case $action in
    start) cmd_start ;;
    stop) cmd_stop ;;
    restart) cmd_restart ;;
    *) usage ;;
  esac
}
