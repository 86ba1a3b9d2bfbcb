# shellcheck shell=bash
# tests/dropin/lib.sh — the fixture of the libpq drop-in's client tests.
#
# Sourced by every tests/dropin/*.sh test. A test is run as
#
#   TEST --dropin LIBPQ.SO.5 --forkpoold PATH [--forkpoolctl PATH]
#   TEST --direct            --forkpoold PATH [--forkpoolctl PATH]
#
# with the scratch PostgreSQL's environment that tests/run.sh exports
# (FORKPOOL_TEST_PG_URL, FORKPOOL_TEST_PG_SOCKET_DIR, FORKPOOL_TEST_PG_PORT,
# PGUSER, PGDATABASE; see contrib/scratch-pg.sh).
#
# --dropin: the clients load the drop-in (LD_PRELOAD, or LD_LIBRARY_PATH when
#   DT_LOAD=libpath) and their conninfo is "host=<forkpoold's socket dir>
#   dbname=<pool>": every connection is a lease.
# --direct: the same clients and servers, but every conninfo points straight at
#   the scratch server (with the pool's application_name), and the drop-in is
#   not loaded. This checks the harness, the servers and the packages; the
#   assertions that only hold for leases (the cap, "forkpool:" in errors, the
#   fork case) are replaced by what holds for direct connections, and the
#   test says so.
#
# What it gives a test:
#   dt_init "$@"                  parse the arguments, make the temp dir, set traps
#                                 (at exit, SIGINT, SIGTERM, SIGHUP: every forkpoold
#                                 and server stopped; those also get SIGTERM should
#                                 the script die where no trap runs, SIGKILL)
#   dt_pool INST POOL [--url URL] [--direct CONNINFO] [KEY=VALUE...]
#                                 a [pool POOL] section in supervisor INST's config;
#                                 the URL is the scratch server's with
#                                 application_name=$(dt_app INST POOL)
#   dt_global INST LINE...        lines for INST's [forkpool] section
#   dt_start INST                 start forkpoold INST, wait until its socket accepts
#   dt_stop INST                  SIGTERM it and wait; fails the test unless it exits 0
#   dt_dir INST                   its socket directory (the host= of a drop-in conninfo)
#   dt_app INST POOL              the pool's application_name
#   dt_conninfo INST POOL [K=V..] the conninfo a client uses for that pool
#   dt_run CMD...                 run a client (drop-in loaded in --dropin mode;
#                                 no PGHOST/PGPORT/PGDATABASE/PGUSER in its environment)
#   dt_client_env                 the environment assignments dt_run adds (one a line)
#   dt_run_as USER CMD...         dt_run as another user (runuser)
#   dt_spawn LOG CMD...           start a server in the background like dt_run; DT_PID
#   dt_sampler_start APP...       count the server's backends with these
#                                 application_names every 20 ms, directly
#   dt_sampler_stop               stop it; sets DT_SAMPLER_MAX and DT_SAMPLER_SAMPLES
#   dt_backends APP               the number of such backends now
#   dt_psql_direct ARGS...        psql straight to the scratch server
#   dt_status_json INST           forkpoolctl status --json
#   dt_bg PID                     a background process of the test: stopped at exit
#   dt_at_exit CMD...             run CMD at exit, after the supervisors stopped
#   dt_free_port                  a free TCP port on 127.0.0.1
#   dt_check DESC CMD...          run CMD; print "ok - DESC" or "FAIL - DESC"
#   dt_ok DESC / dt_fail DESC     record a result
#   dt_finish                     print the summary; exit 1 if anything failed
# Everything started is stopped at exit, also on failure or a signal; the temp
# dir is removed unless DT_KEEP=1.

set -euo pipefail

DT_PY=/usr/bin/python3 # Debian's, where the Debian client packages live
export PYTHONDONTWRITEBYTECODE=1 # nothing written into the source tree
DT_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
DT_NAME=$(basename "$0" .sh)
DT_MODE=
DT_DROPIN=
DT_FORKPOOLD=
DT_FORKPOOLCTL=
DT_TMP=
DT_FAILS=0
DT_CHECKS=0
DT_SAMPLER_PID=
DT_SAMPLER_MAX=0
DT_SAMPLER_SAMPLES=0
declare -A DT_SUP_PID=() DT_POOL_DIRECT=()
DT_BG=()
DT_AT_EXIT=()
DT_INSTANCES=()

dt_log() { printf '%s: %s\n' "$DT_NAME" "$*"; }
dt_die() {
  printf '%s: error: %s\n' "$DT_NAME" "$*" >&2
  exit 1
}

dt_usage() {
  echo "usage: $0 (--dropin LIBPQ.SO.5 | --direct) --forkpoold PATH [--forkpoolctl PATH]" >&2
  exit 2
}

dt_init() {
  while [[ $# -gt 0 ]]; do
    case $1 in
      --dropin)
        [[ $# -ge 2 ]] || dt_usage
        DT_MODE=dropin DT_DROPIN=$2
        shift
        ;;
      --direct) DT_MODE=direct ;;
      --forkpoold)
        [[ $# -ge 2 ]] || dt_usage
        DT_FORKPOOLD=$2
        shift
        ;;
      --forkpoolctl)
        [[ $# -ge 2 ]] || dt_usage
        DT_FORKPOOLCTL=$2
        shift
        ;;
      *) dt_usage ;;
    esac
    shift
  done
  [[ -n $DT_MODE && -n $DT_FORKPOOLD ]] || dt_usage
  [[ -x $DT_FORKPOOLD ]] || dt_die "forkpoold not found: $DT_FORKPOOLD"
  if [[ -z $DT_FORKPOOLCTL ]]; then
    DT_FORKPOOLCTL=$(dirname "$DT_FORKPOOLD")/forkpoolctl
  fi
  if [[ $DT_MODE == dropin ]]; then
    [[ -f $DT_DROPIN ]] || dt_die "the drop-in is not there: $DT_DROPIN"
    # The loader must find it by libpq's soname (LD_LIBRARY_PATH, ctypes).
    if [[ $(basename "$DT_DROPIN") != libpq.so.5 ]]; then
      [[ -e $(dirname "$DT_DROPIN")/libpq.so.5 ]] ||
        dt_die "the drop-in must be named libpq.so.5 (it is $DT_DROPIN)"
      DT_DROPIN=$(dirname "$DT_DROPIN")/libpq.so.5
    fi
  fi
  [[ -x $DT_PY ]] || dt_die "$DT_PY not found (Debian's python3 package)"
  : "${FORKPOOL_TEST_PG_URL:?not set: run the tests with tests/run.sh}"
  : "${FORKPOOL_TEST_PG_SOCKET_DIR:?not set: run the tests with tests/run.sh}"
  : "${FORKPOOL_TEST_PG_PORT:?not set: run the tests with tests/run.sh}"
  : "${PGUSER:?not set: run the tests with tests/run.sh}"
  : "${PGDATABASE:?not set: run the tests with tests/run.sh}"

  # Short (Unix socket paths) and traversable by the other users that tests
  # run clients as (www-data, nobody).
  DT_TMP=$(mktemp -d /tmp/fp-dropin.XXXXXX)
  chmod 0755 "$DT_TMP"
  trap dt_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
  dt_log "mode: $DT_MODE${DT_DROPIN:+ ($DT_DROPIN, loaded with ${DT_LOAD:-preload})}"
}

# ---------------------------------------------------------------- results
dt_ok() {
  DT_CHECKS=$((DT_CHECKS + 1))
  echo "ok - $*"
}
dt_fail() {
  DT_CHECKS=$((DT_CHECKS + 1))
  DT_FAILS=$((DT_FAILS + 1))
  echo "FAIL - $*"
}
dt_check() {
  local desc=$1
  shift
  if "$@"; then dt_ok "$desc"; else dt_fail "$desc"; fi
}
dt_finish() {
  if [[ $DT_FAILS -ne 0 ]]; then
    echo "$DT_NAME ($DT_MODE): FAILED $DT_FAILS of $DT_CHECKS checks"
    exit 1
  fi
  [[ $DT_CHECKS -gt 0 ]] || dt_die "no checks ran"
  echo "$DT_NAME ($DT_MODE): all $DT_CHECKS checks passed"
  exit 0
}
dt_dropin() { [[ $DT_MODE == dropin ]]; }

# ---------------------------------------------------------------- cleanup
dt_kill_wait() { # PID SIGNAL SECONDS: signal it, wait up to SECONDS, then SIGKILL
  local pid=$1 sig=$2 secs=$3 i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -"$sig" "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

dt_cleanup() {
  local rc=$? i inst f
  set +e
  trap '' INT TERM HUP
  [[ -n $DT_SAMPLER_PID ]] && dt_kill_wait "$DT_SAMPLER_PID" TERM 5
  for ((i = ${#DT_BG[@]} - 1; i >= 0; i--)); do
    dt_kill_wait "${DT_BG[i]}" TERM 15
  done
  for inst in "${DT_INSTANCES[@]}"; do
    [[ -n ${DT_SUP_PID[$inst]:-} ]] && dt_kill_wait "${DT_SUP_PID[$inst]}" TERM 15
  done
  for ((i = ${#DT_AT_EXIT[@]} - 1; i >= 0; i--)); do
    eval "${DT_AT_EXIT[i]}"
  done
  if [[ $rc -ne 0 && -n $DT_TMP ]]; then
    for f in "$DT_TMP"/*.log "$DT_TMP"/*/*.log; do
      [[ -s $f ]] || continue
      echo "--- last lines of ${f#"$DT_TMP"/} ---"
      tail -n 25 "$f"
    done
  fi
  if [[ -n $DT_TMP ]]; then
    if [[ ${DT_KEEP:-0} == 1 ]]; then echo "kept $DT_TMP"; else rm -rf -- "$DT_TMP"; fi
  fi
  exit "$rc"
}

dt_bg() { DT_BG+=("$1"); }
dt_at_exit() { DT_AT_EXIT+=("$(printf '%q ' "$@")"); }

# ---------------------------------------------------------------- supervisors
dt_dir() { echo "$DT_TMP/$1"; }
dt_app() { echo "dt_${DT_NAME//[^a-z0-9]/_}_$1_$2_$$"; }

# The scratch server's URL with the pool's application_name.
dt_url() {
  local url=$FORKPOOL_TEST_PG_URL
  if [[ $url == *\?* ]]; then url+="&"; else url+="?"; fi
  echo "${url}application_name=$(dt_app "$1" "$2")"
}

dt_new_instance() {
  local inst=$1 d
  d=$(dt_dir "$inst")
  [[ -d $d ]] && return 0
  mkdir -m 0755 "$d"
  DT_INSTANCES+=("$inst")
  printf '[forkpool]\nsocket = %s/forkpool.sock\nshutdown_grace = 5\nlog_level = debug\n' \
    "$d" >"$d/global.ini"
  : >"$d/pools.ini"
}

dt_global() {
  local inst=$1 d
  shift
  dt_new_instance "$inst"
  d=$(dt_dir "$inst")
  printf '%s\n' "$@" >>"$d/global.ini"
}

dt_pool() {
  local inst=$1 pool=$2 url='' direct='' d kv
  shift 2
  dt_new_instance "$inst"
  d=$(dt_dir "$inst")
  while [[ $# -gt 0 ]]; do
    case $1 in
      --url) url=$2; shift 2 ;;
      --direct) direct=$2; shift 2 ;;
      *) break ;;
    esac
  done
  [[ -n $url ]] || url=$(dt_url "$inst" "$pool")
  [[ -n $direct ]] || direct="host=$FORKPOOL_TEST_PG_SOCKET_DIR port=$FORKPOOL_TEST_PG_PORT dbname=$PGDATABASE user=$PGUSER application_name=$(dt_app "$inst" "$pool")"
  DT_POOL_DIRECT[$inst/$pool]=$direct
  {
    printf '\n[pool %s]\nurl = %s\n' "$pool" "$url"
    for kv in "$@"; do printf '%s = %s\n' "${kv%%=*}" "${kv#*=}"; done
  } >>"$d/pools.ini"
}

# Whether something accepts connections on the SEQPACKET socket $1.
dt_socket_accepts() {
  "$DT_PY" - "$1" <<'EOF' 2>/dev/null
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
s.settimeout(2)
s.connect(sys.argv[1])
EOF
}

dt_start() {
  local inst=$1 d pid i
  d=$(dt_dir "$inst")
  [[ -f $d/global.ini ]] || dt_die "supervisor $inst has no configuration"
  cat "$d/global.ini" "$d/pools.ini" >"$d/forkpool.conf"
  chmod 0600 "$d/forkpool.conf"
  # Never the drop-in: forkpoold uses the real libpq. It gets SIGTERM if this
  # script dies where no trap runs (SIGKILL, a ctest timeout): setpriv sets
  # the parent-death signal, then execs it (the same pid).
  env -u LD_PRELOAD -u LD_LIBRARY_PATH setpriv --pdeathsig TERM -- \
    "$DT_FORKPOOLD" --config "$d/forkpool.conf" </dev/null >>"$d/forkpoold.log" 2>&1 &
  pid=$!
  DT_SUP_PID[$inst]=$pid
  for ((i = 0; i < 100; i++)); do
    if dt_socket_accepts "$d/forkpool.sock"; then
      dt_log "forkpoold $inst (pid $pid) accepts on $d/forkpool.sock"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      wait "$pid" || true
      DT_SUP_PID[$inst]=
      tail -n 20 "$d/forkpoold.log" >&2
      dt_die "forkpoold $inst exited at start"
    fi
    sleep 0.1
  done
  tail -n 20 "$d/forkpoold.log" >&2
  dt_die "forkpoold $inst did not accept on $d/forkpool.sock within 10 s"
}

dt_stop() {
  local inst=$1 pid rc=0 i
  pid=${DT_SUP_PID[$inst]:-}
  [[ -n $pid ]] || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 200; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    DT_SUP_PID[$inst]=
    dt_fail "forkpoold $inst stops within 20 s of SIGTERM"
    return 0
  fi
  wait "$pid" || rc=$?
  DT_SUP_PID[$inst]=
  if [[ $rc -eq 0 ]]; then dt_ok "forkpoold $inst exits 0 on SIGTERM"; else
    dt_fail "forkpoold $inst exits 0 on SIGTERM (status $rc)"
  fi
}

dt_status_json() { "$DT_FORKPOOLCTL" --socket "$(dt_dir "$1")/forkpool.sock" status --json; }

# A pool's field from forkpoolctl status --json: dt_pool_field INST POOL FIELD
dt_pool_field() {
  dt_status_json "$1" | "$DT_PY" -c '
import json, sys
pool, field = sys.argv[1], sys.argv[2]
for p in json.load(sys.stdin)["pools"]:
    if p["name"] == pool:
        print(p[field])
        break
else:
    sys.exit("no pool " + pool)' "$2" "$3"
}

# ---------------------------------------------------------------- clients
dt_conninfo() {
  local inst=$1 pool=$2
  shift 2
  local ci
  if dt_dropin; then
    ci="host=$(dt_dir "$inst") dbname=$pool user=$PGUSER"
  else
    ci=${DT_POOL_DIRECT[$inst/$pool]:?no pool $pool in $inst}
  fi
  [[ $# -gt 0 ]] && ci+=" $*"
  echo "$ci"
}

dt_client_env() {
  dt_dropin || return 0
  if [[ ${DT_LOAD:-preload} == libpath ]]; then
    echo "LD_LIBRARY_PATH=$(dirname "$DT_DROPIN")"
  else
    echo "LD_PRELOAD=$DT_DROPIN"
  fi
}

dt_run() {
  local -a e=()
  mapfile -t e < <(dt_client_env)
  env -u PGHOST -u PGPORT -u PGDATABASE -u PGUSER -u PGAPPNAME "${e[@]}" "$@"
}

# Run a client program that prints one "ok - " or "FAIL - " line per check,
# and count its checks: dt_client_checks NAME SECONDS OUT CMD... (CMD runs
# under dt_run, its output goes to OUT and to the log). A hang, a crash or an
# exit status other than 0 or 1 is one more failed check.
dt_client_checks() {
  local name=$1 secs=$2 out=$3 rc=0 n
  shift 3
  dt_run timeout -k 5 "$secs" "$@" >"$out" 2>&1 || rc=$?
  cat "$out"
  DT_CHECKS=$((DT_CHECKS + $(grep -c '^ok - ' "$out" || true)))
  if [[ $rc -ne 0 ]]; then
    n=$(grep -c '^FAIL - ' "$out" || true)
    DT_CHECKS=$((DT_CHECKS + n))
    DT_FAILS=$((DT_FAILS + n))
    if [[ $rc -eq 124 || $rc -eq 137 ]]; then
      dt_fail "$name: the client program ends within $secs s (it hung)"
    elif [[ $n -eq 0 || $rc -ne 1 ]]; then
      dt_fail "$name: the client program exits 0 or 1 (status $rc)"
    fi
  fi
}

# dt_run as another user: dt_run_as USER CMD... (the drop-in must be readable
# by USER: if it is not, a copy in the temp dir is used).
dt_run_as() {
  local user=$1 lib
  shift
  local -a e=()
  if dt_dropin; then
    lib=$DT_DROPIN
    if ! runuser -u "$user" -- test -r "$lib"; then
      mkdir -p "$DT_TMP/lib"
      install -m 0755 "$DT_DROPIN" "$DT_TMP/lib/libpq.so.5"
      lib=$DT_TMP/lib/libpq.so.5
    fi
    if [[ ${DT_LOAD:-preload} == libpath ]]; then e=("LD_LIBRARY_PATH=$(dirname "$lib")"); else
      e=("LD_PRELOAD=$lib")
    fi
  fi
  (cd "$DT_TMP" && runuser -u "$user" -- env -u PGHOST -u PGPORT -u PGDATABASE -u PGUSER \
    -u PGAPPNAME "${e[@]}" "$@")
}

# Start a client server in the background, drop-in loaded, its output
# appended to LOG: dt_spawn LOG CMD...; sets DT_PID to the command's own pid
# (stopped at exit).
DT_PID=
dt_spawn() {
  local log=$1
  local -a e=()
  shift
  mapfile -t e < <(dt_client_env)
  # Its own session: Apache's parent signals its whole process group on SIGTERM.
  # SIGTERM too if this script dies where no trap runs (as dt_start's forkpoold).
  (exec setsid setpriv --pdeathsig TERM -- env -u PGHOST -u PGPORT -u PGDATABASE -u PGUSER \
    -u PGAPPNAME "${e[@]}" "$@" </dev/null >>"$log" 2>&1) &
  DT_PID=$!
  dt_bg "$DT_PID"
}

dt_psql_direct() { env -u LD_PRELOAD -u LD_LIBRARY_PATH psql -X -q -v ON_ERROR_STOP=1 "$@"; }

dt_backends() {
  dt_psql_direct -Atc "select count(*) from pg_stat_activity where application_name = '$1'"
}

dt_sampler_start() {
  [[ -z $DT_SAMPLER_PID ]] || dt_die "a sampler is already running"
  : >"$DT_TMP/sampler.out"
  env -u LD_PRELOAD -u LD_LIBRARY_PATH "$DT_PY" "$DT_HERE/sampler.py" "$DT_TMP/sampler.out" "$@" \
    2>"$DT_TMP/sampler.log" &
  DT_SAMPLER_PID=$!
  local i
  for ((i = 0; i < 100; i++)); do
    [[ -s $DT_TMP/sampler.out ]] && return 0
    kill -0 "$DT_SAMPLER_PID" 2>/dev/null || dt_die "the sampler exited: $(cat "$DT_TMP/sampler.log")"
    sleep 0.1
  done
  dt_die "the sampler did not start"
}

dt_sampler_stop() {
  [[ -n $DT_SAMPLER_PID ]] || dt_die "no sampler is running"
  kill -TERM "$DT_SAMPLER_PID" 2>/dev/null || true
  wait "$DT_SAMPLER_PID" || dt_die "the sampler failed: $(cat "$DT_TMP/sampler.log")"
  DT_SAMPLER_PID=
  read -r DT_SAMPLER_MAX DT_SAMPLER_SAMPLES <"$DT_TMP/sampler.out"
  dt_log "sampler: at most $DT_SAMPLER_MAX backends in $DT_SAMPLER_SAMPLES samples"
}

# The cap check shared by the load tests: dt_check_cap CAP CLIENTS
# --dropin: never more than CAP backends, and at least one seen (else the
#   sampler counted the wrong thing and the check would be empty).
# --direct: at least one seen, never more than CLIENTS.
dt_check_cap() {
  local cap=$1 clients=$2
  dt_check "the sampler saw the test's backends (max $DT_SAMPLER_MAX, $DT_SAMPLER_SAMPLES samples)" \
    test "$DT_SAMPLER_MAX" -ge 1 -a "$DT_SAMPLER_SAMPLES" -ge 5
  if dt_dropin; then
    dt_check "never more than $cap backends (max seen $DT_SAMPLER_MAX)" test "$DT_SAMPLER_MAX" -le "$cap"
  else
    dt_check "direct: never more than $clients backends (max seen $DT_SAMPLER_MAX; the cap of $cap is checked with the drop-in)" \
      test "$DT_SAMPLER_MAX" -le "$clients"
  fi
}

dt_free_port() {
  "$DT_PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# Wait until a TCP port on 127.0.0.1 accepts: dt_wait_tcp PORT PID SECONDS
dt_wait_tcp() {
  local port=$1 pid=$2 secs=$3 i
  for ((i = 0; i < secs * 10; i++)); do
    if "$DT_PY" -c 'import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$port" 2>/dev/null; then
      return 0
    fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Check a loadgen.py result: dt_check_load FILE REQUESTS APP CAP WORKERS POOL
# Every request answered 200 with a good body, by sessions of the pool (its
# application_name), from at least WORKERS server processes; --dropin: by
# backends that are all forkpoold's connections of POOL (no more than it ever
# opened), and by at most CAP of them when the pool has no overflow. (An
# overflow connection is closed when it comes back and a later one is a new
# backend, so with overflow only the sampler's count of backends at the same
# time, dt_check_cap, bounds them by CAP.)
dt_check_load() {
  local file=$1 want=$2 app=$3 cap=$4 min_workers=$5 pool=$6 good pids apps workers bad
  local connects overflow
  read -r good pids apps workers < <("$DT_PY" -c '
import json, sys
d = json.load(open(sys.argv[1]))
print(d["good"], len(d["pids"]), ",".join(d["apps"]) or "-", d["workers"])' "$file")
  bad=$("$DT_PY" -c 'import json, sys; d = json.load(open(sys.argv[1])); print(d["codes"], d["bodies_bad"][:3])' "$file")
  dt_check "all $want requests answered 200 with a result ($good did; $bad)" test "$good" -eq "$want"
  dt_check "every answer came from a session of the pool (application_name $apps)" test "$apps" = "$app"
  dt_check "at least $min_workers server processes answered ($workers did)" test "$workers" -ge "$min_workers"
  if dt_dropin; then
    read -r connects overflow < <(dt_status_json sup | "$DT_PY" -c '
import json, sys
p = [p for p in json.load(sys.stdin)["pools"] if p["name"] == sys.argv[1]][0]
print(p["counters"]["connects"], p["max_overflow"])' "$pool")
    dt_check "by forkpoold's connections: $pids backends, $connects connects" \
      test "$pids" -le "$connects"
    if [[ $overflow == 0 ]]; then
      dt_check "by at most $cap backends ($pids)" test "$pids" -le "$cap"
    fi
  else
    dt_log "direct: $pids backends answered"
  fi
}
