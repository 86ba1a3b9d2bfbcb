#!/usr/bin/env bash
# perf.sh — where the time of a lease goes: in the worker, in forkpoold and in
# the kernel, measured with perf and strace (measurement only).
#
#   ./bench/perf.sh [--iterations N] [--out DIR]
#
# --iterations N   leases per measured run (default 20000)
# --out DIR        keep perf.data files and raw reports there (default: a temp
#                  directory, removed at the end)
#
# Two workloads, each against a fresh forkpoold (pool_size 8, max_overflow 0)
# on a throwaway PostgreSQL over Unix sockets:
#   lease    forkpool-bench --mode lease: one process looping forkpool_acquire +
#            forkpool_lease_pg + forkpool_release (no query);
#   dropin   pgbench -C -c 1 -j 1 -t N "SELECT 1" through the libpq drop-in
#            (a lease per transaction), next to the same pgbench on one
#            persistent direct connection: the difference is the lease.
# For each: CPU time per lease split user / kernel for the client and for
# forkpoold (utime and stime from /proc/PID/stat), context switches and system
# calls per lease (perf stat, software events and the raw_syscalls tracepoint;
# per call name with strace -c in a separate, shorter run), and the top symbols
# of each process (perf record --call-graph dwarf, cpu-clock, --no-children). Prints markdown.
# perf needs perf_event_paranoid <= 1 or root. Virtual machines without a PMU
# only have software events: that is all this script uses.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FORKPOOL_BUILD_DIR:-$ROOT/build}
PACKAGES=(build-essential cmake pkg-config libpq-dev postgresql postgresql-contrib libsystemd-dev
          libinih-dev libjson-c-dev linux-perf strace)
ITER=20000
OUT=

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"
while (($#)); do
  case $1 in
    --iterations) ITER=${2:-}; shift ;;
    --iterations=*) ITER=${1#*=} ;;
    --out) OUT=${2:-}; shift ;;
    --out=*) OUT=${1#*=} ;;
    -h | --help) usage 0 ;;
    *) echo "perf.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done
[[ $ITER =~ ^[1-9][0-9]*$ ]] || die "--iterations needs a positive number"
bench_install_packages
command -v perf >/dev/null || die "perf is missing (Debian: linux-perf)"
command -v strace >/dev/null || die "strace is missing"

bench_build forkpoold forkpool-bench forkpool-scale forkpool_dropin
PGBENCH=$(pg_config --bindir)/pgbench
DROPIN=$BUILD/dropin/libpq.so.5

bench_scratch_start
[[ -n $OUT ]] || OUT=$TOP/out
mkdir -p "$OUT"
printf 'SELECT 1;\n' >"$TOP/select1.sql"

start_forkpoold() {
  "$BUILD/agent/forkpoold" --url "$FORKPOOL_TEST_PG_URL" --pool-size 8 --max-overflow 0 \
    --pool-timeout 60 --socket "$SOCK" --log-level warning 2>>"$TOP/forkpoold.log" &
  FORKPOOLD_PID=$!
  for ((i = 0; i < 100; i++)); do
    [[ -S $SOCK ]] && return 0
    sleep 0.1
  done
  die "forkpoold did not start"
}
stop_forkpoold() {
  kill -TERM "$FORKPOOLD_PID" 2>/dev/null && wait "$FORKPOOLD_PID"
  FORKPOOLD_PID=''
}

# cpu_ticks PID: utime stime (clock ticks).
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{ print $12, $13 }'; }
HZ=$(getconf CLK_TCK)
EVENTS=task-clock,context-switches,cpu-migrations,page-faults,raw_syscalls:sys_enter

# The client commands; $1 = how many leases (transactions).
client_lease() {
  "$BUILD/bench/forkpool-bench" --mode lease --socket "$SOCK" --iterations "$1" >/dev/null
}
client_dropin() {
  LD_PRELOAD=$DROPIN "$PGBENCH" -n -C -c 1 -j 1 -t "$1" -f "$TOP/select1.sql" -h "$TOP" default \
    >/dev/null 2>&1
}
client_direct() {
  "$PGBENCH" -n -c 1 -j 1 -t "$1" -f "$TOP/select1.sql" >/dev/null 2>&1
}

# wrapped CLIENTFN N [TIMESFILE]: a bash -c command line running the client
# (and writing its children's user and sys seconds to TIMESFILE).
wrapped() {
  local t=''
  [[ -n ${3:-} ]] && t="; times >'$3'"
  printf "%s; SOCK='%s' BUILD='%s' DROPIN='%s' PGBENCH='%s' TOP='%s' %s %s%s" \
    "$(declare -f "$1")" "$SOCK" "$BUILD" "$DROPIN" "$PGBENCH" "$TOP" "$1" "$2" "$t"
}
# seconds "0m1.230s": 1.23
seconds() { awk -v v="$1" 'BEGIN { split(v, a, /[ms]/); printf "%.3f", a[1] * 60 + a[2] }'; }

# measure NAME CLIENTFN N: perf stat of the client and of forkpoold, CPU split.
# Writes $OUT/NAME.stat (client) and $OUT/NAME.fpd.stat (forkpoold) and
# NAME.cpu: "client_user client_sys fpd_user fpd_sys" in seconds.
measure() {
  local name=$1 fn=$2 n=$3 pstat f0 f1 t
  read -r -a f0 < <(cpu_ticks "$FORKPOOLD_PID")
  perf stat -x, -e "$EVENTS" -p "$FORKPOOLD_PID" -o "$OUT/$name.fpd.stat" &
  pstat=$!
  sleep 0.3
  perf stat -x, -e "$EVENTS" -o "$OUT/$name.stat" -- bash -c "$(wrapped "$fn" "$n" "$OUT/$name.times")"
  kill -INT "$pstat"
  wait "$pstat" || true
  read -r -a f1 < <(cpu_ticks "$FORKPOOLD_PID")
  read -r -a t < <(sed -n 2p "$OUT/$name.times")
  printf '%s %s ' "$(seconds "${t[0]}")" "$(seconds "${t[1]}")" >"$OUT/$name.cpu"
  awk -v a=$((f1[0] - f0[0])) -v b=$((f1[1] - f0[1])) -v hz="$HZ" \
    'BEGIN { printf "%.3f %.3f\n", a / hz, b / hz }' >>"$OUT/$name.cpu"
}
# stat_count FILE EVENT: the count of one event in a perf stat -x, file.
stat_count() {
  awk -F, -v e="$2" '$0 !~ /^#/ && $3 == e { print $1; exit }' "$1"
}

# strace_counts NAME CLIENTFN N: per-call counts of the client (-f) and forkpoold.
strace_counts() {
  local name=$1 fn=$2 n=$3 sp
  strace -c -q -o "$OUT/$name.fpd.strace" -p "$FORKPOOLD_PID" &
  sp=$!
  sleep 0.5
  strace -c -q -f -o "$OUT/$name.strace" -- bash -c "$(wrapped "$fn" "$n")"
  sleep 0.2
  kill -INT "$sp"
  wait "$sp" || true
}
# strace_calls FILE: "name calls" lines of a strace -c summary.
strace_calls() {
  awk '$1 ~ /^[0-9.]+$/ && NF >= 5 && $NF != "total" { print $NF, $4 }' "$1"
}
# strace_top BIG SMALL N: "call ×per-op" for the calls made at least 0.5 times per
# op, from the difference of two runs N ops apart.
strace_top() {
  awk -v n="$3" 'FNR == NR { small[$1] = $2; next } { d = ($2 - small[$1]) / n
      if (d >= 0.5) printf "%s %.1f\n", $1, d }' <(strace_calls "$2") <(strace_calls "$1") |
    sort -k2,2nr | awk '{ printf "%s`%s` ×%s", (NR > 1 ? ", " : ""), $1, $2 }'
}

# report NAME: top symbols (self), perf record -g.
record() {
  local name=$1 fn=$2 n=$3 pr
  perf record -q --call-graph dwarf,16384 -e cpu-clock -F 1999 -p "$FORKPOOLD_PID" -o "$OUT/$name.fpd.data" \
    2>/dev/null &
  pr=$!
  sleep 0.3
  perf record -q --call-graph dwarf,16384 -e cpu-clock -F 1999 -o "$OUT/$name.data" -- \
    bash -c "$(wrapped "$fn" "$n")" 2>/dev/null
  kill -INT "$pr"
  wait "$pr" || true
}
# top_symbols DATA [COMM]: "share% symbol [k|.]" for the 12 hottest self symbols.
top_symbols() {
  local -a cm=()
  [[ -n ${2:-} ]] && cm=(--comms "$2")
  perf report -i "$1" --stdio --no-children -g none --sort sym "${cm[@]}" --percent-limit 0.7 \
    2>/dev/null | awk '/^ +[0-9.]+%/ { p = $1; $1 = ""; sub(/^ +/, ""); print p, $0 }' |
    head -n 16
}
# inclusive DATA COMM: the share of samples under each step of a lease (children).
inclusive() {
  perf report -i "$1" --stdio --children -g none --sort sym --comms "$2" 2>/dev/null |
    awk '/^ +[0-9.]+%/ { print $1, $4 }' |
    grep -E ' (forkpool_acquire|forkpool_acquire_labeled|forkpool_lease_pg|fp_adopt_pg|fp_pg_adopt|fp_pg_adopt_begin|fp_pg_adopt_complete|fp_adopt_listener_accept|fp_adopt_listener_open|exchange_startup|finish_connect|forkpool_release|PQconnectStart|PQconnectStartParams|PQconnectPoll|PQconnectdb|PQconnectdbParams|PQfinish|PQexec|PQexecParams|forkpool_open|entry_SYSCALL_64_after_hwframe)$' |
    head -n 20
}
# kernel_share DATA [COMM]: percentage of samples in the kernel.
kernel_share() {
  local -a cm=()
  [[ -n ${2:-} ]] && cm=(--comms "$2")
  perf report -i "$1" --stdio --no-children -g none --sort sym "${cm[@]}" 2>/dev/null |
    awk '/^ +[0-9.]+%/ { v = $1; sub(/%/, "", v); t += v; if ($2 == "[k]") k += v }
         END { printf "%.0f", t ? 100 * k / t : 0 }'
}

echo "| machine | |"
echo "|---|---|"
echo "| CPU | $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1) |"
echo "| vCPUs | $(nproc) |"
echo "| kernel / perf | $(uname -r) / $(perf --version | awk '{print $3}') |"
echo "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
echo

# Wall time of each step of a lease, one process (forkpool-scale --workers 1).
start_forkpoold
STEPS=$("$BUILD/bench/forkpool-scale" --mode lease --socket "$SOCK" --forkpoold-pid "$FORKPOOLD_PID" \
          --pool-size 8 --workers 1 --seconds 3 --header) || die "forkpool-scale failed"
stop_forkpoold
RAW1=$("$BUILD/bench/forkpool-scale" --mode raw --workers 1 --seconds 3 --header) ||
  die "forkpool-scale --mode raw failed"
# field CSV NAME: the value of column NAME in the second line of a two-line CSV.
field() {
  awk -F, -v k="$2" 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == k) c = i; next } { print $c }' \
    <<<"$1"
}
echo "Wall time of the steps of a lease, one process looping for 3 s (medians, µs):"
echo
echo "| forkpool_acquire | forkpool_lease_pg (adoption) | forkpool_release | whole lease | raw SEQPACKET + SCM_RIGHTS round trip |"
echo "|---|---|---|---|---|"
echo "| $(field "$STEPS" wait_p50_us) | $(field "$STEPS" adopt_p50_us) | $(field "$STEPS" release_p50_us) | $(field "$STEPS" op_p50_us) | $(field "$RAW1" op_p50_us) |"
echo

SMALL=$((ITER / 10))
SMALL=$((SMALL < 100 ? 100 : SMALL))
for wl in lease dropin direct; do
  fn=client_$wl
  start_forkpoold
  # Warm the pool (and, for the direct rows, the server's caches).
  "$fn" 200 || die "$wl: the client failed"
  echo "$wl: perf stat ($SMALL and $ITER)" >&2
  measure "$wl.small" "$fn" "$SMALL"
  measure "$wl" "$fn" "$ITER"
  echo "$wl: strace -c ($SMALL and $((2 * SMALL)))" >&2
  strace_counts "$wl.small" "$fn" "$SMALL"
  strace_counts "$wl" "$fn" $((2 * SMALL))
  echo "$wl: perf record" >&2
  record "$wl" "$fn" "$ITER"
  stop_forkpoold
done

# per_op NAME FILESUFFIX EVENT: (count(NAME) - count(NAME.small)) / (ITER - SMALL)
per_op() {
  local a b
  a=$(stat_count "$OUT/$1$2" "$3")
  b=$(stat_count "$OUT/$1.small$2" "$3")
  awk -v a="${a:-0}" -v b="${b:-0}" -v n=$((ITER - SMALL)) 'BEGIN { printf "%.1f", (a - b) / n }'
}
# cpu_per_op NAME FIELD(1..4): µs per op from the difference of the two runs.
cpu_per_op() {
  local a b
  a=$(cut -d' ' -f"$2" "$OUT/$1.cpu")
  b=$(cut -d' ' -f"$2" "$OUT/$1.small.cpu")
  awk -v a="${a:-0}" -v b="${b:-0}" -v n=$((ITER - SMALL)) 'BEGIN { printf "%.1f", (a - b) * 1e6 / n }'
}

echo "Per lease (per transaction for pgbench), from the difference between a run of $ITER"
echo "and a run of $SMALL, so start-up is not counted. CPU in µs; the wall time per"
echo "lease is task-clock over the difference only when the client never waits."
echo
echo "| workload | process | user µs | kernel µs | syscalls | context switches |"
echo "|---|---|---|---|---|---|"
for wl in lease dropin direct; do
  case $wl in
    lease) label="forkpool-bench lease loop" ;;
    dropin) label="pgbench -C via the drop-in, SELECT 1" ;;
    direct) label="pgbench direct persistent, SELECT 1" ;;
  esac
  echo "| $label | client | $(cpu_per_op "$wl" 1) | $(cpu_per_op "$wl" 2) | $(per_op "$wl" .stat raw_syscalls:sys_enter) | $(per_op "$wl" .stat context-switches) |"
  echo "| | forkpoold | $(cpu_per_op "$wl" 3) | $(cpu_per_op "$wl" 4) | $(per_op "$wl" .fpd.stat raw_syscalls:sys_enter) | $(per_op "$wl" .fpd.stat context-switches) |"
done
echo
echo "System calls per lease by name (strace -c: runs of $SMALL and $((2 * SMALL)), the difference; calls made at least 0.5 times per lease):"
echo
echo "| workload | process | calls per lease |"
echo "|---|---|---|"
for wl in lease dropin direct; do
  echo "| $wl | client | $(strace_top "$OUT/$wl.strace" "$OUT/$wl.small.strace" "$SMALL") |"
  echo "| $wl | forkpoold | $(strace_top "$OUT/$wl.fpd.strace" "$OUT/$wl.small.fpd.strace" "$SMALL") |"
done
echo
for wl in lease dropin; do
  for side in client forkpoold; do
    if [[ $side == client ]]; then data=$OUT/$wl.data; else data=$OUT/$wl.fpd.data; fi
    comm=''
    [[ $side == client && $wl == dropin ]] && comm=pgbench
    [[ $side == client && $wl == lease ]] && comm=forkpool-bench
    echo "Top self symbols, $wl, $side (perf record --call-graph dwarf -e cpu-clock; kernel share $(kernel_share "$data" "$comm") %):"
    echo
    echo '```'
    top_symbols "$data" "$comm"
    echo '```'
    if [[ -n $comm ]]; then
      echo
      echo "Inclusive (children) share of the lease's steps, $wl, client:"
      echo
      echo '```'
      inclusive "$data" "$comm"
      echo '```'
    fi
    echo
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
