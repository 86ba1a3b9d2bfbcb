#!/usr/bin/env bash
# ab.sh — two builds of forkpool side by side, interleaved in one run: the
# lease's throughput and latency of each, next to the raw round trip.
#
#   ./bench/ab.sh --before DIR --after DIR [--reps N] [--seconds N]
#                 [--workers N] [--pool N] [--gap-us G]
#
# --before DIR, --after DIR  two build trees (cmake -B DIR, RelWithDebInfo)
#                            with forkpoold and forkpool-scale built, e.g. one
#                            of the last release and one of the working tree
# --reps N      rounds (default 5); each round runs every row once, in turn
# --seconds N   length of one row (default 3)
# --workers N   worker processes of the throughput row (default 32)
# --pool N      pool size (default 8)
# --gap-us G    the pause of the spaced row's workers after each release
#               (default 500)
#
# Rows of each round, each against a fresh forkpoold of its build:
#   throughput  forkpool-scale --mode lease --workers N: leases/s, forkpoold's
#               CPU per lease
#   spaced      the same with 8 workers on a pool of 8 that pause G µs after
#               each release, as prefork workers do between requests:
#               forkpoold's CPU per lease when leases do not come back to back
#               (left out for a build whose forkpool-scale has no --gap-us)
#   latency     forkpool-scale --mode lease --workers 1: the whole lease's p50,
#               with forkpoold and the worker both pinned to CPU 0 (taskset): an
#               unpinned pair lands on one vCPU or on two at random, and on a VM
#               the second costs several times the first
#   raw         forkpool-scale --mode raw (the before build's) with N
#               processes, and with 1 pinned to CPU 0: the floor under both
# Each round's figures also go to stderr, one line per round.
# Prints the machine, then each figure as the median of the rounds with
# [min–max], and the ratios to the raw round trip of the same round.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PACKAGES=(build-essential cmake pkg-config libpq-dev postgresql postgresql-contrib util-linux)
BEFORE=
AFTER=
REPS=5
SECONDS_PER_ROW=3
WORKERS=32
POOL=8
GAP_US=500

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

while (($#)); do
  case $1 in
    --before) BEFORE=${2:-}; shift ;;
    --after) AFTER=${2:-}; shift ;;
    --reps) REPS=${2:-}; shift ;;
    --seconds) SECONDS_PER_ROW=${2:-}; shift ;;
    --workers) WORKERS=${2:-}; shift ;;
    --pool) POOL=${2:-}; shift ;;
    --gap-us) GAP_US=${2:-}; shift ;;
    -h | --help) usage 0 ;;
    *) echo "ab.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done
for v in REPS SECONDS_PER_ROW WORKERS POOL GAP_US; do
  [[ ${!v} =~ ^[1-9][0-9]*$ ]] || die "--${v,,} needs a positive number"
done
for d in "$BEFORE" "$AFTER"; do
  [[ -n $d ]] || die "--before and --after are both needed"
  [[ -x $d/agent/forkpoold && -x $d/bench/forkpool-scale ]] ||
    die "$d has no agent/forkpoold and bench/forkpool-scale (build them there first)"
done
bench_install_packages
bench_scratch_start

# start_forkpoold BUILD [PIN...]: a fresh forkpoold of that build on $SOCK
# (PIN: a command to run it under, e.g. taskset -c 0).
start_forkpoold() {
  local build=$1
  shift
  rm -f "$SOCK"
  "$@" "$build/agent/forkpoold" --url "$FORKPOOL_TEST_PG_URL" --pool-size "$POOL" --max-overflow 0 \
    --pool-timeout 60 --socket "$SOCK" --log-level warning 2>>"$TOP/forkpoold.log" &
  FORKPOOLD_PID=$!
  for ((i = 0; i < 100; i++)); do
    [[ -S $SOCK ]] && return 0
    kill -0 "$FORKPOOLD_PID" 2>/dev/null || die "forkpoold of $build exited at start"
    sleep 0.1
  done
  die "forkpoold of $build did not create $SOCK within 10 s"
}
stop_forkpoold() {
  kill -TERM "$FORKPOOLD_PID" 2>/dev/null && wait "$FORKPOOLD_PID"
  FORKPOOLD_PID=''
}

# field LINE NAME: the named column of a forkpool-scale CSV line.
HEADER=$("$BEFORE/bench/forkpool-scale" --mode raw --workers 1 --seconds 1 --header | head -n1)
field() {
  local i
  i=$(tr ',' '\n' <<<"$HEADER" | grep -nx "$2" | cut -d: -f1)
  cut -d, -f"$i" <<<"$1"
}
# lease_row BUILD WORKERS GAP_US [PIN...]: one forkpool-scale lease line (PIN: as
# start_forkpoold; GAP_US 0: back to back).
lease_row() {
  local line build=$1 workers=$2 gap=()
  (($3 > 0)) && gap=(--gap-us "$3")
  shift 3
  start_forkpoold "$build" "$@"
  line=$("$@" "$build/bench/forkpool-scale" --mode lease --socket "$SOCK" --forkpoold-pid "$FORKPOOLD_PID" \
           --pool-size "$POOL" --workers "$workers" --seconds "$SECONDS_PER_ROW" "${gap[@]}") ||
    echo "ab.sh: a lease row of $build had errors" >&2
  stop_forkpoold
  echo "$line"
}

echo "| machine | |"
echo "|---|---|"
echo "| CPU | $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1) |"
echo "| vCPUs | $(nproc) |"
echo "| kernel | $(uname -srm) |"
echo "| PostgreSQL | $(psql -XAtc 'SHOW server_version') |"
echo "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
echo "| rounds × seconds per row | $REPS × $SECONDS_PER_ROW s; $WORKERS workers, pool $POOL |"
echo

RES=$TOP/ab.tsv
: >"$RES"
# record NAME VALUE
record() { printf '%s\t%s\n' "$1" "$2" >>"$RES"; }
for ((rep = 1; rep <= REPS; rep++)); do
  raw_n=$("$BEFORE/bench/forkpool-scale" --mode raw --workers "$WORKERS" --seconds "$SECONDS_PER_ROW")
  raw_1=$(taskset -c 0 "$BEFORE/bench/forkpool-scale" --mode raw --workers 1 \
           --seconds "$SECONDS_PER_ROW")
  record raw_ops "$(field "$raw_n" ops_per_s)"
  record raw_p50 "$(field "$raw_1" op_p50_us)"
  for side in before after; do
    dir=$BEFORE
    [[ $side == after ]] && dir=$AFTER
    tp=$(lease_row "$dir" "$WORKERS" 0)
    lat=$(lease_row "$dir" 1 0 taskset -c 0)
    if "$dir/bench/forkpool-scale" --help | grep -q -- --gap-us; then
      spaced=$(lease_row "$dir" 8 "$GAP_US")
      record "${side}_spaced_cpu" "$(field "$spaced" forkpoold_cpu_us_per_op)"
      record "${side}_spaced_wakeups" "$(field "$spaced" forkpoold_wakeups_per_op)"
    fi
    ops=$(field "$tp" ops_per_s)
    record "${side}_ops" "$ops"
    record "${side}_cpu" "$(field "$tp" forkpoold_cpu_us_per_op)"
    record "${side}_wakeups" "$(field "$tp" forkpoold_wakeups_per_op)"
    record "${side}_ratio" "$(awk -v a="$ops" -v b="$(field "$raw_n" ops_per_s)" \
                                'BEGIN { printf "%.3f", (b > 0 ? a / b : 0) }')"
    record "${side}_p50" "$(field "$lat" op_p50_us)"
    echo "round $rep $side: $ops leases/s with $WORKERS workers (raw $(field "$raw_n" ops_per_s)), one pinned: $(field "$lat" op_p50_us) µs (raw $(field "$raw_1" op_p50_us))" >&2
  done
  echo "round $rep of $REPS done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

# stat NAME: "median [min–max]" of the rounds' values.
stat() {
  awk -F'\t' -v k="$1" '$1 == k { v[n++] = $2 } END {
    if (n == 0) { print "–"; exit }
    for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    m = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
    printf "%g [%g–%g]", m, v[0], v[n - 1] }' "$RES"
}
echo "| figure | before | after | raw |"
echo "|---|---|---|---|"
echo "| leases/s, $WORKERS workers | $(stat before_ops) | $(stat after_ops) | $(stat raw_ops) |"
echo "| vs raw, same round | $(stat before_ratio) | $(stat after_ratio) | 1 |"
echo "| forkpoold CPU per lease (µs) | $(stat before_cpu) | $(stat after_cpu) | |"
echo "| forkpoold wake-ups per lease | $(stat before_wakeups) | $(stat after_wakeups) | |"
echo "| forkpoold CPU per lease, 8 workers pausing $GAP_US µs after each release (µs) | $(stat before_spaced_cpu) | $(stat after_spaced_cpu) | |"
echo "| the same: forkpoold wake-ups per lease | $(stat before_spaced_wakeups) | $(stat after_spaced_wakeups) | |"
echo "| one process, pinned with forkpoold to CPU 0: lease p50 (µs) | $(stat before_p50) | $(stat after_p50) | $(stat raw_p50) |"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
