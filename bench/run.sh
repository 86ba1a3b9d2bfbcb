#!/usr/bin/env bash
# run.sh — reproduce forkpool's benchmark numbers in one command.
#
#   ./bench/run.sh [forkpool-bench options...]     e.g. ./bench/run.sh --seconds 10
#
# Builds forkpoold and forkpool-bench into build/ ($FORKPOOL_BUILD_DIR),
# starts a throwaway PostgreSQL (contrib/scratch-pg.sh) and forkpoold on its
# Unix socket with pool_size = --procs (default 8) and max_overflow 0, runs
# forkpool-bench against both (the direct side uses the same Unix socket
# through the PG* environment), prints its markdown report and stops
# everything it started. Installs missing Debian packages first when root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FORKPOOL_BUILD_DIR:-$ROOT/build}
PACKAGES=(build-essential cmake pkg-config libpq-dev postgresql postgresql-contrib libsystemd-dev
          libinih-dev libjson-c-dev libcmocka-dev python3 curl)

die() { echo "bench/run.sh: error: $*" >&2; exit 1; }

# The pool must be as large as the number of benchmark processes.
PROCS=8
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --procs) PROCS=${args[i + 1]:-} ;;
    --procs=*) PROCS=${args[i]#--procs=} ;;
    --socket | --socket=*) die "--socket is chosen by run.sh" ;;
  esac
done
[[ $PROCS =~ ^[1-9][0-9]*$ ]] || die "--procs needs a positive number"

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); run as root to install them"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

echo "building into $BUILD" >&2
cmake -S "$ROOT" -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target forkpoold forkpool-bench >/dev/null

# The top directory must be searchable by the "postgres" user that runs the server as root.
TOP=$(mktemp -d)
chmod 0755 "$TOP"
SOCK=$TOP/forkpool.sock
FORKPOOLD_PID=''
cleanup() {
  local rc=$?
  set +e
  [[ -n $FORKPOOLD_PID ]] && kill -TERM "$FORKPOOLD_PID" 2>/dev/null && wait "$FORKPOOLD_PID"
  "$ROOT/contrib/scratch-pg.sh" stop "$TOP/pg" >/dev/null 2>&1
  if ((rc != 0)) && [[ -s $TOP/forkpoold.log ]]; then
    echo "--- last lines of forkpoold.log ---" >&2
    tail -n 15 "$TOP/forkpoold.log" >&2
  fi
  rm -rf "$TOP"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$ROOT/contrib/scratch-pg.sh" start "$TOP/pg" >&2
# shellcheck source=/dev/null
source "$TOP/pg/env"

# Starts forkpoold on the scratch server with the given extra pool options.
start_forkpoold() {
  "$BUILD/agent/forkpoold" --url "$FORKPOOL_TEST_PG_URL" --pool-size "$PROCS" --max-overflow 0 \
    --socket "$SOCK" "$@" 2>>"$TOP/forkpoold.log" &
  FORKPOOLD_PID=$!
  for ((i = 0; i < 100; i++)); do
    [[ -S $SOCK ]] && return 0
    kill -0 "$FORKPOOLD_PID" 2>/dev/null || die "forkpoold exited at start"
    sleep 0.1
  done
  die "forkpoold did not create $SOCK within 10 s"
}

stop_forkpoold() {
  kill -TERM "$FORKPOOLD_PID" 2>/dev/null && wait "$FORKPOOLD_PID"
  FORKPOOLD_PID=''
}

start_forkpoold
"$BUILD/bench/forkpool-bench" --socket "$SOCK" "$@"
stop_forkpoold

# What the pool options cost or save, lease per transaction, same processes and time:
# reset_on_return discard (DISCARD ALL on every release) against auto (only what the
# session changed: nothing for these clean sessions), and the process pool class (one
# sticky connection per process: no round trip to forkpoold after the first acquire).
echo
echo "| pool options (throughput, $PROCS processes) | transactions/s |"
echo "|---|---|"
for variant in "--reset-on-return rollback" "--reset-on-return discard" \
               "--reset-on-return auto" "--poolclass process"; do
  # shellcheck disable=SC2086
  start_forkpoold $variant
  tps=$("$BUILD/bench/forkpool-bench" --socket "$SOCK" --mode throughput "$@" |
        awk -F'|' '/acquire → SELECT 1 → release/ { gsub(/ /, "", $3); print $3; exit }')
  echo "| $variant | ${tps:-?} |"
  stop_forkpoold
done
