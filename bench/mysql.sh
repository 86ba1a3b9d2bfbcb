#!/usr/bin/env bash
# mysql.sh — what a MariaDB lease costs next to a new connection, with
# forkpool-bench --db mysql against a throwaway MariaDB (Unix socket).
#
#   ./bench/mysql.sh [--reps N] [--iterations N] [--compare DIR]
#
# --reps N        rounds (default 3), each running every row once, in turn
# --iterations N  leases per row (default 5000; the connects are a tenth)
# --compare DIR   a second build tree (forkpoold and forkpool-bench built in
#                 it, e.g. of an earlier commit): its lease rows run in the
#                 same rounds, as "before"
#
# Rows: forkpool_acquire + forkpool_lease_mysql + forkpool_release of the
# same session every time, the same alternating between two connections
# (each lease taken while the previous one is still held: --alternate), and
# mysql_real_connect + mysql_close over the same Unix socket. forkpoold has
# pool_size 2, max_overflow 0. Prints the machine, then each median over the
# rounds with [min–max], and connect / lease.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FORKPOOL_BUILD_DIR:-$ROOT/build}
PACKAGES=(build-essential cmake pkg-config libpq-dev postgresql postgresql-contrib
          libmariadb-dev mariadb-server libsystemd-dev libinih-dev libjson-c-dev)
REPS=3
ITER=5000
COMPARE=

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

while (($#)); do
  case $1 in
    --reps) REPS=${2:-}; shift ;;
    --iterations) ITER=${2:-}; shift ;;
    --compare) COMPARE=${2:-}; shift ;;
    -h | --help) usage 0 ;;
    *) echo "mysql.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps needs a positive number"
[[ $ITER =~ ^[1-9][0-9]*$ ]] || die "--iterations needs a positive number"
if [[ -n $COMPARE ]]; then
  [[ -x $COMPARE/agent/forkpoold && -x $COMPARE/bench/forkpool-bench ]] ||
    die "$COMPARE has no agent/forkpoold and bench/forkpool-bench"
fi
bench_install_packages
bench_build forkpoold forkpool-bench
bench_scratch_start
bench_cleanup_extra() { "$ROOT/contrib/scratch-mariadb.sh" stop "$TOP/my" >/dev/null 2>&1; }
"$ROOT/contrib/scratch-mariadb.sh" start "$TOP/my" >&2
# shellcheck source=/dev/null
source "$TOP/my/env"
DIRECT="socket=$FORKPOOL_TEST_MY_SOCKET;user=$FORKPOOL_TEST_MY_USER"
DIRECT+=";password=$FORKPOOL_TEST_MY_PASSWORD;database=$FORKPOOL_TEST_MY_DATABASE"

# start_forkpoold BUILD
start_forkpoold() {
  rm -f "$SOCK"
  "$1/agent/forkpoold" --url "$FORKPOOL_TEST_MY_URL" --pool-size 2 --max-overflow 0 \
    --pool-timeout 60 --socket "$SOCK" --log-level warning 2>>"$TOP/forkpoold.log" &
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
# median_us BUILD ARGS...: forkpool-bench's median (µs) of its one latency row.
median_us() {
  local b=$1
  shift
  "$b/bench/forkpool-bench" --db mysql --socket "$SOCK" --direct "$DIRECT" "$@" |
    awk -F'|' '/^\| (forkpool_acquire|mysql_real_connect)/ {
      v = $4; gsub(/ /, "", v)
      if (v ~ /ms$/) { sub(/ms$/, "", v); v *= 1000 } else sub(/µs$/, "", v)
      print v; exit }'
}

echo "| machine | |"
echo "|---|---|"
echo "| CPU | $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1) |"
echo "| vCPUs | $(nproc) |"
echo "| kernel | $(uname -srm) |"
echo "| MariaDB | $(mariadb --version | sed 's/,.*//') |"
echo "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
echo "| rounds × leases | $REPS × $ITER (connects: $((ITER / 10 > 0 ? ITER / 10 : 1))) |"
echo

RES=$TOP/mysql.tsv
: >"$RES"
sides=(after)
[[ -n $COMPARE ]] && sides=(before after)
for ((rep = 1; rep <= REPS; rep++)); do
  for side in "${sides[@]}"; do
    dir=$BUILD
    [[ $side == before ]] && dir=$COMPARE
    start_forkpoold "$dir"
    printf '%s_same\t%s\n' "$side" "$(median_us "$dir" --mode lease --iterations "$ITER")" >>"$RES"
    printf '%s_alt\t%s\n' "$side" \
      "$(median_us "$dir" --mode lease --alternate --iterations "$ITER")" >>"$RES"
    stop_forkpoold
  done
  printf 'connect\t%s\n' \
    "$(median_us "$BUILD" --mode connect --connect-iterations $((ITER / 10 > 0 ? ITER / 10 : 1)))" \
    >>"$RES"
  echo "round $rep of $REPS done (load $(cut -d' ' -f1 /proc/loadavg))" >&2
done

# stat NAME: "median [min–max]"; med NAME: the median alone.
stat() {
  awk -F'\t' -v k="$1" -v only="${2:-}" '$1 == k && $2 != "" { v[n++] = $2 } END {
    if (n == 0) { print "–"; exit }
    for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] + 0 < v[i] + 0) { t = v[i]; v[i] = v[j]; v[j] = t }
    m = n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2
    if (only) print m; else printf "%g [%g–%g]", m, v[0], v[n - 1] }' "$RES"
}
ratio() { awk -v a="$(stat connect 1)" -v b="$(stat "$1" 1)" 'BEGIN { if (b > 0) printf "%.1f×", a / b; else print "–" }'; }
echo "| µs (median of the rounds' medians) | same session | alternating between two | connect / lease (same, alternating) |"
echo "|---|---|---|---|"
for side in "${sides[@]}"; do
  echo "| forkpool lease ($side) | $(stat "${side}_same") | $(stat "${side}_alt") | $(ratio "${side}_same"), $(ratio "${side}_alt") |"
done
echo "| mysql_real_connect + mysql_close (Unix socket) | $(stat connect) | | |"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
