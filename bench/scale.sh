#!/usr/bin/env bash
# scale.sh — how leasing scales: worker processes, pool sizes, memory, and the
# raw SEQPACKET + SCM_RIGHTS round trip underneath, with forkpool-scale.
#
#   ./bench/scale.sh [--seconds N] [--quick] [--csv PATH] [--png PATH]
#
# --seconds N   length of one row (default 5)
# --quick       --seconds 2
#
# Rows (each a fresh forkpoold, --max-overflow 0, pool_timeout 60 s):
#   workers  8, 32, 128, 512, 1024 worker processes on a pool of 8 connections
#   pool     pool sizes 8, 32, 128, 512, 1024 with as many worker processes
#   raw      8 … 1024 processes doing the raw round trip against one epoll server
# Each lease row: leases/s, forkpool_acquire's wait p50/p99, the whole lease's
# p50/p99 (acquire + forkpool_lease_pg + release), forkpoold's CPU per lease,
# forkpoold's VmRSS per pool slot and per connected worker, and the VmRSS and
# RssAnon libforkpool adds to a worker. Writes a CSV (default
# bench/results/scale.csv) and a chart (the CSV's name with .png) with gnuplot.
#
# The scratch PostgreSQL gets max_connections = 1100 for the 1024-connection pool.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FORKPOOL_BUILD_DIR:-$ROOT/build}
PACKAGES=(build-essential cmake pkg-config libpq-dev postgresql postgresql-contrib libsystemd-dev
          libinih-dev libjson-c-dev gnuplot-nox)
SECONDS_PER_ROW=5
CSV=$ROOT/bench/results/scale.csv
PNG=
COUNTS=(8 32 128 512 1024)
FIXED_POOL=8

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

while (($#)); do
  case $1 in
    --seconds) SECONDS_PER_ROW=${2:-}; shift ;;
    --seconds=*) SECONDS_PER_ROW=${1#*=} ;;
    --quick) SECONDS_PER_ROW=2 ;;
    --csv) CSV=${2:-}; shift ;;
    --csv=*) CSV=${1#*=} ;;
    --png) PNG=${2:-}; shift ;;
    --png=*) PNG=${1#*=} ;;
    -h | --help) usage 0 ;;
    *) echo "scale.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done
[[ $SECONDS_PER_ROW =~ ^[1-9][0-9]*$ ]] || die "--seconds needs a positive number"
[[ -n $CSV ]] || die "--csv needs a path"
[[ -n $PNG ]] || PNG=${CSV%.csv}.png
bench_install_packages
command -v gnuplot >/dev/null || die "gnuplot is missing (Debian: gnuplot-nox)"

bench_build forkpoold forkpool-scale
SCALE_BIN=$BUILD/bench/forkpool-scale

# 1024 workers + 1024 connections need more descriptors than the usual 1024.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(($(ulimit -n) >= 4200)) || die "needs at least 4200 open files (ulimit -n is $(ulimit -n))"

bench_scratch_start
psql -XqAt -c 'ALTER SYSTEM SET max_connections = 1100' >/dev/null
PGBIN=$(pg_config --bindir)
if [[ $(id -u) -eq 0 ]]; then
  (cd "$TOP/pg" && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$TOP/pg/data" -l "$TOP/pg/restart.log" -w restart >/dev/null)
else
  "$PGBIN/pg_ctl" -D "$TOP/pg/data" -l "$TOP/pg/restart.log" -w restart >/dev/null
fi
[[ $(psql -XAtc 'SHOW max_connections') -ge 1100 ]] || die "could not raise max_connections"

start_forkpoold() {
  "$BUILD/agent/forkpoold" --url "$FORKPOOL_TEST_PG_URL" --pool-size "$1" --max-overflow 0 \
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

echo "| machine | |"
echo "|---|---|"
echo "| CPU | $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1) |"
echo "| vCPUs | $(nproc) |"
echo "| kernel | $(uname -srm) |"
echo "| PostgreSQL | $(psql -XAtc 'SHOW server_version') |"
echo "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
echo "| per row | $SECONDS_PER_ROW s |"
echo

mkdir -p "$(dirname "$CSV")"
TMPCSV=$TOP/scale.csv
header=--header
# lease_row SERIES POOL WORKERS
lease_row() {
  local line
  start_forkpoold "$2"
  if line=$("$SCALE_BIN" --mode lease --socket "$SOCK" --forkpoold-pid "$FORKPOOLD_PID" \
              --pool-size "$2" --workers "$3" --seconds "$SECONDS_PER_ROW" $header); then :; else
    echo "scale.sh: lease row pool $2 workers $3 had errors" >&2
  fi
  stop_forkpoold
  emit "$1" "$line"
}
# raw_row WORKERS
raw_row() {
  local line
  line=$("$SCALE_BIN" --mode raw --workers "$1" --seconds "$SECONDS_PER_ROW" $header) ||
    echo "scale.sh: raw row $1 had errors" >&2
  emit raw "$line"
}
emit() {
  local series=$1
  if [[ -n $header ]]; then
    sed -n '1s/^/series,/p; 2s/^/'"$series"',/p' <<<"$2" >>"$TMPCSV"
    header=''
  else
    printf '%s,%s\n' "$series" "$2" >>"$TMPCSV"
  fi
  tail -n 1 "$TMPCSV" >&2
}

for n in "${COUNTS[@]}"; do lease_row workers "$FIXED_POOL" "$n"; done
for p in "${COUNTS[@]}"; do lease_row pool "$p" "$p"; done
for n in "${COUNTS[@]}"; do raw_row "$n"; done
cp "$TMPCSV" "$CSV"

# Markdown tables from the CSV.
col() { head -n1 "$CSV" | tr ',' '\n' | grep -nx "$1" | cut -d: -f1; }
c_series=$(col series) c_workers=$(col workers) c_pool=$(col pool_size)
c_ops=$(col ops_per_s) c_w50=$(col wait_p50_us) c_w99=$(col wait_p99_us)
c_o50=$(col op_p50_us) c_o99=$(col op_p99_us) c_cpu=$(col forkpoold_cpu_us_per_op)
c_slot=$(col rss_kb_per_slot) c_wkr=$(col rss_kb_per_worker)
c_arss=$(col worker_added_rss_kb) c_aanon=$(col worker_added_anon_kb)
echo "| series | workers | pool | leases/s | vs raw | acquire wait p50 / p99 (µs) | lease p50 / p99 (µs) | forkpoold CPU/lease (µs) | forkpoold kB/slot | forkpoold kB/worker | worker +VmRSS / +RssAnon (kB) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
awk -F, -v s="$c_series" -v w="$c_workers" -v p="$c_pool" -v o="$c_ops" -v w50="$c_w50" \
  -v w99="$c_w99" -v o50="$c_o50" -v o99="$c_o99" -v cpu="$c_cpu" -v slot="$c_slot" \
  -v wkr="$c_wkr" -v ar="$c_arss" -v aa="$c_aanon" '
  NR == 1 { next }
  { rows[NR] = $0 }
  $s == "raw" { raw[$w] = $o }
  END {
    for (i = 2; i <= NR; i++) {
      split(rows[i], f, ",")
      ratio = (f[s] != "raw" && raw[f[w]] > 0) ? sprintf("%.2f×", f[o] / raw[f[w]]) : "–"
      if (f[s] == "raw")
        printf "| raw SEQPACKET+SCM_RIGHTS | %s | – | %s | 1× | %s / %s | | | | | |\n", f[w], f[o], f[w50], f[w99]
      else
        printf "| %s | %s | %s | %s | %s | %s / %s | %s / %s | %s | %s | %s | %s / %s |\n", f[s], f[w], f[p], f[o], ratio, f[w50], f[w99], f[o50], f[o99], f[cpu], f[slot], f[wkr], f[ar], f[aa]
    }
  }' "$CSV"
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CSV: ${CSV#"$ROOT"/}"

# The chart: leases/s against processes (log x), the three series.
for s in workers pool raw; do
  awk -F, -v s="$c_series" -v w="$c_workers" -v o="$c_ops" -v w99="$c_w99" -v want="$s" \
    'NR > 1 && $s == want { print $w, $o, $w99 }' "$CSV" >"$TOP/$s.dat"
done
gnuplot <<EOF
set terminal pngcairo size 1000,460 font "sans,10" noenhanced
set output "$PNG"
set multiplot layout 1,2 title "forkpool-scale, $(nproc) vCPUs, ${SECONDS_PER_ROW} s per point"
set logscale x 2
set xlabel "worker processes"
set grid
set key top right
set ylabel "leases (round trips) per second"
set yrange [0:*]
plot "$TOP/raw.dat" using 1:2 with linespoints lw 2 title "raw SEQPACKET + SCM_RIGHTS", \
     "$TOP/workers.dat" using 1:2 with linespoints lw 2 title "lease, pool of $FIXED_POOL", \
     "$TOP/pool.dat" using 1:2 with linespoints lw 2 title "lease, pool = workers"
set logscale y 10
set yrange [*:*]
set ylabel "acquire wait p99 (µs)"
set key top left
plot "$TOP/raw.dat" using 1:3 with linespoints lw 2 title "raw round trip p99", \
     "$TOP/workers.dat" using 1:3 with linespoints lw 2 title "pool of $FIXED_POOL", \
     "$TOP/pool.dat" using 1:3 with linespoints lw 2 title "pool = workers"
unset multiplot
EOF
echo "chart: ${PNG#"$ROOT"/}"
