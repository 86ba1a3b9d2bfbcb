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

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

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

bench_install_packages

bench_build forkpoold forkpool-bench

bench_scratch_start

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
