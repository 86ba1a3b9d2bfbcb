#!/usr/bin/env bash
# all.sh — every benchmark table of the README in one command.
#
#   ./bench/all.sh [--quick] [--out DIR]
#
# Runs, one after the other (each starts and stops its own PostgreSQL and
# forkpoold, and PgBouncer for peers.sh):
#   run.sh     lease vs connect latency, lease-per-transaction throughput
#   peers.sh   pgbench: direct, PgBouncer, the forkpool drop-in    (CSV + 2 PNG)
#   perf.sh    where a lease's time goes (perf stat, strace -c, perf record)
#   scale.sh   worker processes, pool sizes, memory, raw IPC floor (CSV + PNG)
#   mysql.sh   a MariaDB lease against mysql_real_connect (same session, alternating)
# and writes each one's markdown to DIR (default bench/results/): run.md,
# peers.md, perf.md, scale.md, mysql.md, next to peers.csv/png, peers-tx.png and
# scale.csv/png. (ab.sh, which compares two builds, is not part of it.)
# --quick: short rows (a couple of minutes in all) for checking the scripts;
# without it, about 15 minutes. Run it on an otherwise idle machine: every
# process shares the same CPUs, and the load average is printed with each table.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/bench/results
QUICK=0
while (($#)); do
  case $1 in
    --quick) QUICK=1 ;;
    --out) OUT=${2:?--out needs a directory}; shift ;;
    --out=*) OUT=${1#*=} ;;
    -h | --help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "all.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$OUT"

if ((QUICK)); then
  run_args=(--seconds 2 --iterations 1000 --connect-iterations 50)
  peers_args=(--quick)
  perf_args=(--iterations 2000)
  scale_args=(--quick)
  mysql_args=(--reps 1 --iterations 1000)
else
  run_args=()
  peers_args=(--seconds 5 --reps 3)
  perf_args=(--iterations 20000)
  scale_args=(--seconds 5)
  mysql_args=(--reps 3)
fi

echo "== run.sh" >&2
"$ROOT/bench/run.sh" "${run_args[@]}" | tee "$OUT/run.md"
echo "== peers.sh" >&2
"$ROOT/bench/peers.sh" "${peers_args[@]}" --csv "$OUT/peers.csv" | tee "$OUT/peers.md"
echo "== perf.sh" >&2
"$ROOT/bench/perf.sh" "${perf_args[@]}" | tee "$OUT/perf.md"
echo "== scale.sh" >&2
"$ROOT/bench/scale.sh" "${scale_args[@]}" --csv "$OUT/scale.csv" | tee "$OUT/scale.md"
echo "== mysql.sh" >&2
"$ROOT/bench/mysql.sh" "${mysql_args[@]}" | tee "$OUT/mysql.md"
