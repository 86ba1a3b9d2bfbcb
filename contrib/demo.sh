#!/usr/bin/env bash
# demo.sh — forkpool's main demo: a prefork HTTP server with 24 workers shares
# at most 5 PostgreSQL connections, with no proxy between it and the database.
#
#   ./contrib/demo.sh
#
# On a fresh Debian 12 machine, as root: installs the packages it needs (only
# when some are missing), builds the project into build/ ($FORKPOOL_BUILD_DIR),
# starts a throwaway PostgreSQL (contrib/scratch-pg.sh), forkpoold with
# pool_size 3 + max_overflow 2, and forkpool-demo-server, sends load with a
# small Python client, and shows forkpoolctl status and the server's own count
# of client connections while under load and after. Everything it started is
# stopped on exit. Exit status 0 when every response was 200 (or 503) and the
# database never saw more than 5 connections from forkpool.
#
# Environment: DEMO_WORKERS (24), DEMO_REQUESTS (2000), DEMO_CONCURRENCY (32),
# DEMO_QUERY (what each request runs), DEMO_KEEP=1 keeps the temporary
# directory with the logs, FORKPOOL_BUILD_DIR (build/).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=${FORKPOOL_BUILD_DIR:-$ROOT/build}
WORKERS=${DEMO_WORKERS:-24}
REQUESTS=${DEMO_REQUESTS:-2000}
CONCURRENCY=${DEMO_CONCURRENCY:-32}
# A short sleep makes each lease last a few ms, so 24 workers really compete for 5 connections.
QUERY=${DEMO_QUERY:-"SELECT pg_backend_pid(), now(), pg_sleep(0.002)"}
POOL_SIZE=3
MAX_OVERFLOW=2
CAP=$((POOL_SIZE + MAX_OVERFLOW))
PACKAGES=(build-essential cmake pkg-config libpq-dev postgresql postgresql-contrib libsystemd-dev
          libinih-dev libjson-c-dev libcmocka-dev python3 curl)

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
die() { echo "demo.sh: error: $*" >&2; exit 1; }

# --- (a) packages ----------------------------------------------------------------------------
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); run as root to install them"
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
fi

# --- (b) build -------------------------------------------------------------------------------
say "building into $BUILD"
cmake -S "$ROOT" -B "$BUILD" >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target forkpoold forkpoolctl forkpool-demo-server >/dev/null
FORKPOOLD=$BUILD/agent/forkpoold
FORKPOOLCTL=$BUILD/ctl/forkpoolctl
SERVER=$BUILD/contrib/forkpool-demo-server

# --- (c) PostgreSQL --------------------------------------------------------------------------
# The top directory must be searchable by the "postgres" user that runs the server as root.
TOP=$(mktemp -d)
chmod 0755 "$TOP"
SOCK=$TOP/forkpool.sock
SERVER_PID='' FORKPOOLD_PID='' LOAD_PID=''
cleanup() {
  local rc=$?
  set +e
  [[ -n $LOAD_PID ]] && kill "$LOAD_PID" 2>/dev/null
  [[ -n $SERVER_PID ]] && kill -TERM "$SERVER_PID" 2>/dev/null && wait "$SERVER_PID" 2>/dev/null
  [[ -n $FORKPOOLD_PID ]] && kill -TERM "$FORKPOOLD_PID" 2>/dev/null && wait "$FORKPOOLD_PID" 2>/dev/null
  "$ROOT/contrib/scratch-pg.sh" stop "$TOP/pg" >/dev/null 2>&1
  if ((rc != 0)); then
    for log in "$TOP"/forkpoold.log "$TOP"/demo-server.log; do
      [[ -s $log ]] && { echo "--- last lines of $(basename "$log") ---"; tail -n 15 "$log"; }
    done >&2
  fi
  if [[ ${DEMO_KEEP:-0} == 1 ]]; then echo "logs kept in $TOP"; else rm -rf "$TOP"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

say "starting a throwaway PostgreSQL"
"$ROOT/contrib/scratch-pg.sh" start "$TOP/pg"
# shellcheck source=/dev/null
source "$TOP/pg/env"
backends() {
  psql -XAtc "select count(*) from pg_stat_activity where backend_type = 'client backend'
              and datname = current_database() and pid <> pg_backend_pid()"
}

# --- (d) forkpoold ---------------------------------------------------------------------------
say "starting forkpoold (pool_size $POOL_SIZE, max_overflow $MAX_OVERFLOW)"
"$FORKPOOLD" --url "$FORKPOOL_TEST_PG_URL" --pool-size "$POOL_SIZE" \
  --max-overflow "$MAX_OVERFLOW" --socket "$SOCK" 2>"$TOP/forkpoold.log" &
FORKPOOLD_PID=$!
for ((i = 0; i < 100; i++)); do
  [[ -S $SOCK ]] && break
  kill -0 "$FORKPOOLD_PID" 2>/dev/null || die "forkpoold exited at start"
  sleep 0.1
done
[[ -S $SOCK ]] || die "forkpoold did not create $SOCK within 10 s"

# --- (e) the prefork server ------------------------------------------------------------------
say "starting forkpool-demo-server with $WORKERS workers"
"$SERVER" --workers "$WORKERS" --socket "$SOCK" --listen 127.0.0.1:0 --query "$QUERY" \
  2>"$TOP/demo-server.log" &
SERVER_PID=$!
PORT=
for ((i = 0; i < 100; i++)); do
  PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$TOP/demo-server.log")
  [[ -n $PORT ]] && curl -fs "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 "$SERVER_PID" 2>/dev/null || die "forkpool-demo-server exited at start"
  sleep 0.1
done
[[ -n $PORT ]] || die "forkpool-demo-server did not start listening"
URL=http://127.0.0.1:$PORT/
echo "one request:"
curl -fsS "$URL" | sed 's/^/    /'

# --- (f) load --------------------------------------------------------------------------------
# Many short connections from $CONCURRENCY threads; prints one JSON line of counts at the end.
load() {
  python3 - "$URL" "$REQUESTS" "$CONCURRENCY" <<'EOF'
import collections, json, sys, threading, time, urllib.request, urllib.error
url, total, conc = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
lock = threading.Lock()
codes, workers, backends, lat = collections.Counter(), set(), set(), []
left = [total]
def run():
    while True:
        with lock:
            if left[0] == 0:
                return
            left[0] -= 1
        t0 = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=60) as r:
                code, body = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            code, body = e.code, ""
        except Exception as e:
            code, body = type(e).__name__, ""
        dt = time.monotonic() - t0
        f = dict(l.split(": ", 1) for l in body.splitlines() if ": " in l)
        with lock:
            codes[str(code)] += 1
            lat.append(dt)
            if code == 200:
                workers.add(f.get("worker pid"))
                backends.add(f.get("backend pid"))
t0 = time.monotonic()
ts = [threading.Thread(target=run) for _ in range(conc)]
for t in ts: t.start()
for t in ts: t.join()
el = time.monotonic() - t0
lat.sort()
print(json.dumps({"codes": codes, "workers": len(workers), "backends": len(backends),
                  "seconds": round(el, 2), "rps": round(total / el),
                  "p50_ms": round(lat[len(lat) // 2] * 1e3, 1),
                  "p99_ms": round(lat[min(len(lat) - 1, len(lat) * 99 // 100)] * 1e3, 1)}))
EOF
}

say "sending $REQUESTS requests from $CONCURRENCY concurrent clients"
load >"$TOP/load.json" &
LOAD_PID=$!
max_seen=0 samples=0 printed=0
while kill -0 "$LOAD_PID" 2>/dev/null; do
  n=$(backends 2>/dev/null || echo 0)
  ((n > max_seen)) && max_seen=$n
  samples=$((samples + 1))
  if ((printed == 0 && samples >= 3)); then
    # --- (g) under load ---
    echo "under load: forkpoolctl status"
    "$FORKPOOLCTL" --socket "$SOCK" status | sed 's/^/    /' || true
    echo "under load: PostgreSQL client backends of this database: $n"
    printed=1
  fi
  sleep 0.2
done
wait "$LOAD_PID" || die "the load generator failed"
LOAD_PID=
after=$(backends)
((after > max_seen)) && max_seen=$after
echo "after the load: forkpoolctl status"
"$FORKPOOLCTL" --socket "$SOCK" status | sed 's/^/    /' || true
echo "after the load: PostgreSQL client backends of this database: $after"

# --- report ----------------------------------------------------------------------------------
read -r ok unavailable other nworkers nbackends secs rps p50 p99 < <(python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); c = d["codes"]
print(c.get("200", 0), c.get("503", 0), sum(c.values()) - c.get("200", 0) - c.get("503", 0),
      d["workers"], d["backends"], d["seconds"], d["rps"], d["p50_ms"], d["p99_ms"])' "$TOP/load.json")
cat <<EOF

forkpool demo report
  requests           $REQUESTS from $CONCURRENCY concurrent clients in ${secs} s ($rps req/s, p50 ${p50} ms, p99 ${p99} ms)
  responses          200: $ok   503: $unavailable   other: $other
  worker processes   $WORKERS, of which $nworkers answered
  backend pids       $nbackends different ones in the answers (an overflow connection is closed
                     when it comes back to $POOL_SIZE idle ones, as in SQLAlchemy's QueuePool)
  DB connections     at most $max_seen seen in pg_stat_activity during the load (cap $CAP = pool_size $POOL_SIZE + max_overflow $MAX_OVERFLOW), $after now
EOF
if ((other != 0 || ok == 0 || max_seen > CAP)); then
  cat "$TOP/load.json" >&2
  die "the demo did not hold its promise (see above)"
fi
echo "  => $WORKERS worker processes were served by at most $max_seen database connections."
