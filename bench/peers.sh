#!/usr/bin/env bash
# peers.sh — forkpool's libpq drop-in next to direct connections and PgBouncer,
# measured by one unmodified client (pgbench) against one throwaway server.
#
#   ./bench/peers.sh [--seconds N] [--reps N] [--quick] [--csv PATH] [--png PATH]
#                    [--clients N] [--tx-clients N]
#
# --seconds N   length of one pgbench run (default 10)
# --reps N      runs per row, interleaved; the row reports the median (default 1)
# --quick       --seconds 3 --reps 1
#
# Every row is pgbench -c N -j N (default 8; -j = -c, see the README's drop-in
# section) over Unix sockets, for three workloads and both protocols:
#
#   select1   one "SELECT 1" per transaction
#   web       a "web request": 10 SELECTs by primary key on pgbench_accounts,
#             each its own transaction
#   webtx     the same 10 SELECTs inside BEGIN … COMMIT: one transaction
#   × -M simple, -M extended
#
# and these configurations:
#
#   direct            persistent connections to PostgreSQL
#   direct_C          -C: a new connection per transaction
#   pgbouncer_tx      PgBouncer, pool_mode transaction, persistent clients
#   pgbouncer_sess_C  PgBouncer, pool_mode session, -C
#   forkpool_C        the drop-in (LD_PRELOAD), -C: a lease per transaction
#   direct_dropin     persistent direct connections with the drop-in loaded
#                     (the forwarders' cost: should be ~1.00)
#
# and, with more clients than server connections (M = --tx-clients, default 4 N,
# on the same N server connections; these clients never reconnect):
#
#   direct_many       M persistent connections to PostgreSQL (M backends)
#   pgbouncer_tx_many PgBouncer, pool_mode transaction, M persistent clients
#   forkpool_tx       the drop-in, pool_mode = transaction, M persistent clients:
#                     each transaction leases a session, idle connections hold none
#
# PgBouncer and forkpoold each get a pool of N server connections (N = --clients);
# forkpoold has max_overflow 0. Each row: TPS, average latency, the ratio to
# "direct" (direct_many for the M-client rows) and to PgBouncer's transaction mode
# with the same number of clients, of the same workload and protocol (measured
# minutes apart, in one run). Writes a CSV (default bench/results/peers.csv) and two
# grouped bar charts of the ratios with gnuplot: the N-client rows (default: the
# CSV's name with .png) and the M-client rows (the same with -tx.png).
#
# Builds forkpoold and the drop-in into $FORKPOOL_BUILD_DIR (default build/),
# starts PostgreSQL with contrib/scratch-pg.sh, and stops everything it started.
# Needs pgbench, pgbouncer and gnuplot (Debian: postgresql-contrib or
# postgresql-client, pgbouncer, gnuplot-nox); installs them when root.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FORKPOOL_BUILD_DIR:-$ROOT/build}
PACKAGES=(build-essential cmake pkg-config libpq-dev postgresql postgresql-contrib libsystemd-dev
          libinih-dev libjson-c-dev pgbouncer gnuplot-nox)
SECONDS_PER_ROW=10
CLIENTS=8
TX_CLIENTS=
SCALE=10
REPS=1
CSV=$ROOT/bench/results/peers.csv
PNG=

# shellcheck source=bench/lib.sh
source "$ROOT/bench/lib.sh"

while (($#)); do
  case $1 in
    --seconds) SECONDS_PER_ROW=${2:-}; shift ;;
    --seconds=*) SECONDS_PER_ROW=${1#*=} ;;
    --quick) SECONDS_PER_ROW=3; REPS=1 ;;
    --reps) REPS=${2:-}; shift ;;
    --reps=*) REPS=${1#*=} ;;
    --csv) CSV=${2:-}; shift ;;
    --csv=*) CSV=${1#*=} ;;
    --png) PNG=${2:-}; shift ;;
    --png=*) PNG=${1#*=} ;;
    --clients) CLIENTS=${2:-}; shift ;;
    --clients=*) CLIENTS=${1#*=} ;;
    --tx-clients) TX_CLIENTS=${2:-}; shift ;;
    --tx-clients=*) TX_CLIENTS=${1#*=} ;;
    -h | --help) usage 0 ;;
    *) echo "peers.sh: unknown option $1" >&2; usage 2 >&2 ;;
  esac
  shift
done
[[ $SECONDS_PER_ROW =~ ^[1-9][0-9]*$ ]] || die "--seconds needs a positive number"
[[ $REPS =~ ^[1-9][0-9]*$ ]] || die "--reps needs a positive number"
[[ $CLIENTS =~ ^[1-9][0-9]*$ ]] || die "--clients needs a positive number"
[[ -n $TX_CLIENTS ]] || TX_CLIENTS=$((CLIENTS * 4))
[[ $TX_CLIENTS =~ ^[1-9][0-9]*$ ]] || die "--tx-clients needs a positive number"
[[ -n $CSV ]] || die "--csv needs a path"
[[ -n $PNG ]] || PNG=${CSV%.csv}.png

bench_install_packages

PGBIN=$(pg_config --bindir)
PGBENCH=$PGBIN/pgbench   # the binary itself, not Debian's wrapper script
[[ -x $PGBENCH ]] || die "no pgbench in $PGBIN"

bench_build forkpoold forkpool_dropin
DROPIN=$BUILD/dropin/libpq.so.5
[[ -f $DROPIN ]] || die "the drop-in was not built ($DROPIN)"

BOUNCER_PID=''
# PgBouncer, like the server, runs as "postgres" when we are root.
bench_cleanup_extra() {
  if [[ -n $BOUNCER_PID ]] && kill -TERM "$BOUNCER_PID" 2>/dev/null; then
    for ((i = 0; i < 50; i++)); do
      kill -0 "$BOUNCER_PID" 2>/dev/null || break
      sleep 0.1
    done
  fi
}
bench_scratch_start
BENCH_LOGS+=("$TOP/bouncer/pgbouncer.log")
echo "pgbench -i -s $SCALE" >&2
"$PGBENCH" -i -q -s "$SCALE" >/dev/null 2>&1 || die "pgbench -i failed"

# --- the workloads ----------------------------------------------------------
printf 'SELECT 1;\n' >"$TOP/select1.sql"
{
  for i in $(seq 1 10); do printf '\\set aid%d random(1, %d)\n' "$i" $((100000 * SCALE)); done
  for i in $(seq 1 10); do
    printf 'SELECT abalance FROM pgbench_accounts WHERE aid = :aid%d;\n' "$i"
  done
} >"$TOP/web.sql"
{
  grep '^\\set' "$TOP/web.sql"
  echo 'BEGIN;'
  grep -v '^\\set' "$TOP/web.sql"
  echo 'COMMIT;'
} >"$TOP/webtx.sql"

# --- PgBouncer: one alias per pool mode, Unix socket only, trust ------------
BOUNCER_DIR=$TOP/bouncer
BOUNCER_PORT=$((PGPORT + 1))
mkdir "$BOUNCER_DIR"
cat >"$BOUNCER_DIR/pgbouncer.ini" <<EOF
[databases]
bench_tx = host=$PGHOST port=$PGPORT dbname=$PGDATABASE user=$PGUSER pool_mode=transaction
bench_session = host=$PGHOST port=$PGPORT dbname=$PGDATABASE user=$PGUSER pool_mode=session

[pgbouncer]
listen_addr =
listen_port = $BOUNCER_PORT
unix_socket_dir = $BOUNCER_DIR
auth_type = trust
auth_file = $BOUNCER_DIR/userlist.txt
default_pool_size = $CLIENTS
max_client_conn = $((CLIENTS * 4 + TX_CLIENTS + 10))
server_reset_query =
logfile = $BOUNCER_DIR/pgbouncer.log
pidfile = $BOUNCER_DIR/pgbouncer.pid
EOF
printf '"%s" ""\n' "$PGUSER" >"$BOUNCER_DIR/userlist.txt"
if [[ $(id -u) -eq 0 ]]; then
  chown -R postgres: "$BOUNCER_DIR"
  runuser -u postgres -- pgbouncer -d "$BOUNCER_DIR/pgbouncer.ini"
else
  pgbouncer -d "$BOUNCER_DIR/pgbouncer.ini"
fi
for ((i = 0; i < 50; i++)); do
  [[ -s $BOUNCER_DIR/pgbouncer.pid && -S $BOUNCER_DIR/.s.PGSQL.$BOUNCER_PORT ]] && break
  sleep 0.1
done
BOUNCER_PID=$(cat "$BOUNCER_DIR/pgbouncer.pid" 2>/dev/null) || die "PgBouncer did not start"

# --- forkpoold: pools of CLIENTS connections, no overflow: "bench" (session
# mode, a lease per connect) and "bench_tx" (transaction mode) ----------------
FP_DIR=$TOP/forkpool
mkdir "$FP_DIR"
cat >"$FP_DIR/forkpool.conf" <<EOF
[forkpool]
socket = $FP_DIR/forkpool.sock
shutdown_grace = 5
log_level = warning

[pool bench]
url = $FORKPOOL_TEST_PG_URL
pool_size = $CLIENTS
max_overflow = 0
pool_timeout = 60

[pool bench_tx]
url = $FORKPOOL_TEST_PG_URL
pool_mode = transaction
pool_size = $CLIENTS
max_overflow = 0
pool_timeout = 60
EOF
"$BUILD/agent/forkpoold" --config "$FP_DIR/forkpool.conf" 2>>"$TOP/forkpoold.log" &
FORKPOOLD_PID=$!
for ((i = 0; i < 100; i++)); do
  [[ -S $FP_DIR/forkpool.sock ]] && break
  kill -0 "$FORKPOOLD_PID" 2>/dev/null || die "forkpoold exited at start"
  sleep 0.1
done
[[ -S $FP_DIR/forkpool.sock ]] || die "forkpoold did not create its socket"

# --- the machine ------------------------------------------------------------
load1() { cut -d' ' -f1 /proc/loadavg; }
machine() {
  local cpu
  cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
  echo "| machine | |"
  echo "|---|---|"
  echo "| CPU | ${cpu:-unknown} |"
  echo "| vCPUs | $(nproc) |"
  echo "| kernel | $(uname -srm) |"
  echo "| PostgreSQL | $(psql -XAtc 'SHOW server_version') (pgbench $("$PGBENCH" --version | awk '{print $3}')) |"
  echo "| PgBouncer | $(pgbouncer --version | head -n1 | awk '{print $NF}') |"
  echo "| load average at start | $(cut -d' ' -f1-3 /proc/loadavg) |"
  echo "| per row | pgbench -c $CLIENTS -j $CLIENTS -T $SECONDS_PER_ROW, median of $REPS, Unix sockets, scale $SCALE |"
  echo "| rows with more clients | pgbench -c $TX_CLIENTS -j $TX_CLIENTS on $CLIENTS server connections |"
}
machine

# --- the rows ---------------------------------------------------------------
# run_row CONFIG WORKLOAD PROTOCOL: one pgbench run; prints "tps latency_ms".
run_row() {
  local config=$1 workload=$2 protocol=$3 out c
  c=$(clients_of "$config")
  local -a env=() args=(-n -c "$c" -j "$c" -T "$SECONDS_PER_ROW" -M "$protocol"
                        -f "$TOP/$workload.sql")
  case $config in
    direct) args+=(-h "$PGHOST" -p "$PGPORT" "$PGDATABASE") ;;
    direct_C) args+=(-C -h "$PGHOST" -p "$PGPORT" "$PGDATABASE") ;;
    pgbouncer_tx) args+=(-h "$BOUNCER_DIR" -p "$BOUNCER_PORT" bench_tx) ;;
    pgbouncer_sess_C) args+=(-C -h "$BOUNCER_DIR" -p "$BOUNCER_PORT" bench_session) ;;
    forkpool_C) env=(LD_PRELOAD="$DROPIN"); args+=(-C -h "$FP_DIR" bench) ;;
    direct_dropin) env=(LD_PRELOAD="$DROPIN"); args+=(-h "$PGHOST" -p "$PGPORT" "$PGDATABASE") ;;
    direct_many) args+=(-h "$PGHOST" -p "$PGPORT" "$PGDATABASE") ;;
    pgbouncer_tx_many) args+=(-h "$BOUNCER_DIR" -p "$BOUNCER_PORT" bench_tx) ;;
    forkpool_tx) env=(LD_PRELOAD="$DROPIN"); args+=(-h "$FP_DIR" bench_tx) ;;
  esac
  if ! out=$(env "${env[@]}" "$PGBENCH" "${args[@]}" 2>&1); then
    echo "peers.sh: $config $workload $protocol failed:" >&2
    # pgbench names each client's error on its own line, before the summary.
    { grep -m 5 -E 'error|abort' <<<"$out"; tail -n 5 <<<"$out"; } | uniq >&2
    echo "0 0"
    return
  fi
  awk '/^latency average/ { lat = $4 } /^tps = / { tps = $3 } END { print tps + 0, lat + 0 }' \
    <<<"$out"
}

WORKLOADS=(select1 web webtx)
CONFIGS=(direct direct_C pgbouncer_tx pgbouncer_sess_C forkpool_C direct_dropin
         direct_many pgbouncer_tx_many forkpool_tx)
LABELS=("direct, persistent" "direct, -C" "PgBouncer transaction, persistent"
        "PgBouncer session, -C" "forkpool drop-in, -C (lease per txn)"
        "direct, persistent, drop-in loaded"
        "direct, persistent, $TX_CLIENTS clients"
        "PgBouncer transaction, $TX_CLIENTS clients on $CLIENTS"
        "forkpool drop-in transaction mode, $TX_CLIENTS clients on $CLIENTS")
# The first index of the configurations with TX_CLIENTS clients.
MANY=6
# clients_of CONFIG: pgbench's -c for it.
clients_of() {
  case $1 in
    *_many | forkpool_tx) echo "$TX_CLIENTS" ;;
    *) echo "$CLIENTS" ;;
  esac
}

# median VALUES...: the median (mean of the middle two for an even count).
median() {
  printf '%s\n' "$@" | sort -g |
    awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

mkdir -p "$(dirname "$CSV")"
echo "workload,protocol,config,clients,seconds,reps,tps,tps_min,tps_max,latency_ms,ratio_to_direct,load1,ratio_to_pgbouncer_tx" \
  >"$CSV"
# A short warm-up so that the first row does not pay for cold caches.
"$PGBENCH" -n -c "$CLIENTS" -j "$CLIENTS" -T 1 -f "$TOP/web.sql" >/dev/null 2>&1 || true

echo
echo "| workload | protocol | configuration | TPS | latency avg (ms) | vs direct | vs PgBouncer tx |"
echo "|---|---|---|---|---|---|---|"
NC=${#CONFIGS[@]}
for workload in "${WORKLOADS[@]}"; do
  for protocol in simple extended; do
    declare -A tps_of=() lat_of=() load_of=() med=()
    # REPS rounds over all configurations, each round starting one further on,
    # so that no configuration always runs first or right after the same one.
    for ((r = 0; r < REPS; r++)); do
      for ((j = 0; j < NC; j++)); do
        k=$(((j + r) % NC))
        load_of[$k]+="$(load1) "
        read -r tps lat < <(run_row "${CONFIGS[k]}" "$workload" "$protocol")
        tps_of[$k]+="$tps "
        lat_of[$k]+="$lat "
      done
    done
    # shellcheck disable=SC2086  # the lists are space-separated numbers
    for ((k = 0; k < NC; k++)); do med[$k]=$(median ${tps_of[$k]}); done
    for ((k = 0; k < NC; k++)); do
      # shellcheck disable=SC2086  # the lists are space-separated numbers
      {
        tps=${med[$k]}
        lat=$(median ${lat_of[$k]})
        load=$(median ${load_of[$k]})
        lo=$(printf '%s\n' ${tps_of[$k]} | sort -g | head -n1)
        hi=$(printf '%s\n' ${tps_of[$k]} | sort -g | tail -n1)
      }
      # The bases: direct and PgBouncer's transaction mode with as many clients.
      if ((k < MANY)); then base=${med[0]} bouncer=${med[2]}; else
        base=${med[$MANY]} bouncer=${med[$((MANY + 1))]}
      fi
      ratio=$(awk -v t="$tps" -v b="$base" 'BEGIN { printf "%.3f", (b > 0 ? t / b : 0) }')
      vsb=$(awk -v t="$tps" -v b="$bouncer" 'BEGIN { printf "%.3f", (b > 0 ? t / b : 0) }')
      echo "$workload,$protocol,${CONFIGS[k]},$(clients_of "${CONFIGS[k]}"),$SECONDS_PER_ROW,$REPS,$tps,$lo,$hi,$lat,$ratio,$load,$vsb" \
        >>"$CSV"
      printf '| %s | %s | %s | %.0f | %.3f | %.3f× | %.3f× |\n' "$workload" "$protocol" \
        "${LABELS[k]}" "$tps" "$lat" "$ratio" "$vsb"
    done
    unset med
    unset tps_of lat_of load_of
  done
done
echo
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "CSV: ${CSV#"$ROOT"/}"

# --- the charts: one group of bars per workload/protocol, one bar per configuration
# chart PNG TITLE FIRST LAST: the configurations FIRST..LAST (indexes into CONFIGS),
# their ratios to direct (the CSV's 11th column).
chart() {
  local png=$1 title=$2 first=$3 last=$4 dat=$TOP/${1##*/}.dat n=$(($4 - $3 + 1)) k
  {
    printf 'group'
    for ((k = first; k <= last; k++)); do printf '\t"%s"' "${LABELS[k]}"; done
    printf '\n'
    for workload in "${WORKLOADS[@]}"; do
      for protocol in simple extended; do
        case $workload in
          select1) printf '"SELECT 1, -M %s"' "$protocol" ;;
          web) printf '"10 SELECTs, -M %s"' "$protocol" ;;
          webtx) printf '"10 SELECTs in 1 txn, -M %s"' "$protocol" ;;
        esac
        for ((k = first; k <= last; k++)); do
          awk -F, -v w="$workload" -v p="$protocol" -v c="${CONFIGS[k]}" \
            '$1 == w && $2 == p && $3 == c { printf "\t%s", $11 }' "$CSV"
        done
        printf '\n'
      done
    done
  } >"$dat"
  gnuplot <<EOF
set terminal pngcairo size 1300,560 font "sans,10"
set output "$png"
set title "$title"
set ylabel "TPS / direct persistent"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xrange [-0.6:$((2 * ${#WORKLOADS[@]} - 1)).6]
set yrange [0:*]
set offsets 0, 0, 0.1, 0
set key autotitle columnhead
set grid ytics
set key outside bottom center horizontal maxrows 2 noenhanced
set xtics noenhanced
plot for [i=2:$((n + 1))] "$dat" using i:xtic(1), \
     for [i=2:$((n + 1))] "" using (\$0 + (i - 2 - $n / 2.0 + 0.5) / ($n + 1)):i:(sprintf("%.2f", column(i))) with labels offset 0,0.6 font ",7" notitle
EOF
  echo "chart: ${png#"$ROOT"/}"
}
chart "$PNG" "pgbench -c $CLIENTS -j $CLIENTS, Unix sockets: TPS relative to direct persistent connections" \
  0 $((MANY - 1))
chart "${PNG%.png}-tx.png" \
  "pgbench -c $TX_CLIENTS -j $TX_CLIENTS, persistent, $CLIENTS server connections: TPS relative to $TX_CLIENTS direct connections" \
  "$MANY" $((${#CONFIGS[@]} - 1))
