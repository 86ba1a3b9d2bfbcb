#!/usr/bin/env bash
# dropin/php-apache, dropin/php-fpm, dropin/tx-php-apache — unmodified PHP pages, one with
# ext/pgsql (pg_connect, pg_prepare, pg_close) and one with PDO_pgsql (a
# server-side prepared statement in a transaction), served by
#   apache:  Apache prefork + mod_php with 24 children (the drop-in loaded with
#            LD_PRELOAD into the apache2 process: mod_php loads the
#            extensions with RTLD_DEEPBIND, hence a library named libpq.so.5)
#   fpm:     PHP-FPM, pm = static, 20 children (the drop-in found through
#            LD_LIBRARY_PATH), with a small FastCGI client
# on a pool of 2 + 2 overflow (the default reset_on_return, rollback: the
# drop-in asks for the rest): a few hundred
# concurrent requests all answered, by at most 4 backends; after the server
# stops nothing is left checked out and the server holds only the pool's idle
# connections.
#   apache-tx: Apache prefork as above, on a pool of 4 (no overflow) in
#            transaction mode (pool_mode = transaction), with pages that keep
#            their connection for the life of the child: pg_pconnect and PDO
#            with PDO::ATTR_PERSISTENT (php/txpg.php, php/txpdo.php), one
#            transaction of several statements per request, each carrying the
#            request's token (a page answers 500 when an answer is not its
#            own, the statements of its transaction ran on two backends or in
#            two transactions, or it sees another request's uncommitted row).
#            Also: the table holds exactly one committed row per request, and
#            while the children keep their persistent connections open,
#            nothing is checked out.
#
#   php.sh apache|apache-tx|fpm (--dropin LIBPQ.SO.5 | --direct) --forkpoold PATH ...
# Each server runs in the foreground from its own temporary configuration, on
# a free 127.0.0.1 port (Apache) or a Unix socket (PHP-FPM); its children run
# as www-data.
SERVER=${1:-}
shift || true
TX=0
case $SERVER in
  apache) ;;
  apache-tx) SERVER=apache TX=1 ;;
  fpm) DT_LOAD=libpath ;;
  *) echo "usage: $0 apache|apache-tx|fpm (--dropin LIB | --direct) --forkpoold PATH" >&2; exit 2 ;;
esac
# shellcheck source=tests/dropin/lib.sh
. "$(dirname "$0")/lib.sh"
DT_NAME=php_$SERVER
((TX)) && DT_NAME=php_apache_tx
dt_init "$@"

RUN_USER=www-data
[[ $(id -u) -eq 0 ]] || dt_die "needs root: the server runs its children as www-data"
CHILDREN=24
[[ $SERVER == fpm ]] && CHILDREN=20
REQUESTS=400
CONCURRENCY=32
POOL_SIZE=2
MAX_OVERFLOW=2
POOL_KEYS=()
PAGES=(pg.php pdo.php)
if ((TX)); then
  POOL_SIZE=4
  MAX_OVERFLOW=0
  POOL_KEYS=(pool_mode=transaction)
  PAGES=(txpg.php txpdo.php)
fi
CAP=$((POOL_SIZE + MAX_OVERFLOW))
getent passwd "$RUN_USER" >/dev/null || dt_die "no user $RUN_USER (the apache2 package creates it)"

# The children (www-data) must reach the socket: its group is the first of allow_groups.
dt_global sup "allow_groups = $RUN_USER"
dt_pool sup php "${POOL_KEYS[@]}" pool_size=$POOL_SIZE max_overflow=$MAX_OVERFLOW pool_timeout=60
dt_start sup
APP=$(dt_app sup php)

DOCS=$DT_TMP/docs
mkdir -m 0755 "$DOCS"
for page in "${PAGES[@]}"; do cp "$DT_HERE/php/$page" "$DOCS/"; done
TABLE=dt_php_tx_$$
if ((TX)); then
  dt_psql_direct -c "create table $TABLE (worker int not null, token text primary key, state text not null)"
fi
CI=$(dt_conninfo sup php)
if dt_dropin; then
  DSN="pgsql:host=$(dt_dir sup);dbname=php"
else
  DSN="pgsql:host=$FORKPOOL_TEST_PG_SOCKET_DIR;port=$FORKPOOL_TEST_PG_PORT;dbname=$PGDATABASE;application_name=$APP"
fi
phpq() { local s=${1//\\/\\\\}; printf "'%s'" "${s//\'/\\\'}"; }
cat >"$DOCS/conf.php" <<EOF
<?php
\$DT_CONNINFO = $(phpq "$CI");
\$DT_PDO_DSN = $(phpq "$DSN");
\$DT_USER = $(phpq "$PGUSER");
\$DT_TABLE = $(phpq "$TABLE");
EOF
chmod 0644 "$DOCS"/*.php
dt_log "pg_connect('$CI'), new PDO('$DSN', '$PGUSER')"

SRV=$DT_TMP/$SERVER
mkdir -m 0755 "$SRV"
# The release's PHP: the one mod_php module and the one php-fpmX.Y installed.
php_one() {
  local -a found
  mapfile -t found < <(compgen -G "$1" | sort -V)
  [[ ${#found[@]} -ge 1 ]] || dt_die "no $2 installed ($1)"
  echo "${found[-1]}"
}
if [[ $SERVER == apache ]]; then
  PORT=$(dt_free_port)
  MODS=/usr/lib/apache2/modules
  cat >"$SRV/httpd.conf" <<EOF
ServerRoot "$SRV"
ServerName 127.0.0.1
Listen 127.0.0.1:$PORT
PidFile "$SRV/httpd.pid"
DefaultRuntimeDir "$SRV"
ErrorLog "$SRV/error.log"
LogLevel warn
User $RUN_USER
Group $RUN_USER
LoadModule mpm_prefork_module $MODS/mod_mpm_prefork.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule php_module $(php_one "$MODS/libphp*.so" "mod_php")
StartServers $CHILDREN
MinSpareServers $CHILDREN
MaxSpareServers $((CHILDREN * 2))
ServerLimit $((CHILDREN * 2))
MaxRequestWorkers $((CHILDREN * 2))
MaxConnectionsPerChild 0
KeepAlive Off
DocumentRoot "$DOCS"
<Directory "$DOCS">
  Require all granted
</Directory>
<FilesMatch "\.php\$">
  SetHandler application/x-httpd-php
</FilesMatch>
EOF
  dt_spawn "$SRV/server.log" apache2 -f "$SRV/httpd.conf" -DFOREGROUND
  SPID=$DT_PID
  dt_wait_tcp "$PORT" "$SPID" 30 || dt_die "apache2 did not listen on 127.0.0.1:$PORT"
  TARGETS=()
  for page in "${PAGES[@]}"; do TARGETS+=("http://127.0.0.1:$PORT/$page"); done
else
  cat >"$SRV/php-fpm.conf" <<EOF
[global]
pid = $SRV/php-fpm.pid
error_log = $SRV/error.log
daemonize = no
log_level = notice

[dt]
user = $RUN_USER
group = $RUN_USER
listen = $SRV/php-fpm.sock
listen.mode = 0600
pm = static
pm.max_children = $CHILDREN
catch_workers_output = yes
EOF
  dt_spawn "$SRV/server.log" "$(php_one '/usr/sbin/php-fpm[0-9]*' php-fpm)" -y "$SRV/php-fpm.conf" -F
  SPID=$DT_PID
  for ((i = 0; i < 300; i++)); do
    [[ -S $SRV/php-fpm.sock ]] && break
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.1
  done
  [[ -S $SRV/php-fpm.sock ]] || dt_die "php-fpm did not create $SRV/php-fpm.sock"
  TARGETS=("fcgi:$SRV/php-fpm.sock:$DOCS/pg.php" "fcgi:$SRV/php-fpm.sock:$DOCS/pdo.php")
fi

# Wait for all the children (they start together, but not at once).
kids=0
for ((i = 0; i < 300; i++)); do
  kids=$(pgrep -c -P "$SPID" || true)
  [[ $kids -ge $CHILDREN ]] && break
  sleep 0.1
done
dt_check "$SERVER runs $CHILDREN children (got $kids)" test "$kids" -ge "$CHILDREN"

WARM=0
for t in "${TARGETS[@]}"; do
  out=$(timeout 60 "$DT_PY" "$DT_HERE/loadgen.py" --requests 1 --concurrency 1 "$t")
  dt_log "one request to ${t##*/}: $out"
  WARM=$((WARM + 1))
done

dt_sampler_start "$APP"
timeout 150 "$DT_PY" "$DT_HERE/loadgen.py" --requests "$REQUESTS" --concurrency "$CONCURRENCY" \
  "${TARGETS[@]}" >"$DT_TMP/load.json" || dt_fail "the load generator exits 0"
[[ -s $DT_TMP/load.json ]] ||
  echo '{"good": 0, "codes": {}, "bodies_bad": ["no result: the load generator was stopped"], "pids": [], "apps": [], "hosts": [], "workers": 0}' \
    >"$DT_TMP/load.json"
dt_sampler_stop
dt_check_load "$DT_TMP/load.json" "$REQUESTS" "$APP" "$CAP" $((CHILDREN / 2)) php
dt_check_cap "$CAP" "$((CHILDREN * 2))"
# pg_host() (PQhost) says what the page asked for.
if dt_dropin; then want_host=$(dt_dir sup); else want_host=$FORKPOOL_TEST_PG_SOCKET_DIR; fi
hosts=$("$DT_PY" -c 'import json, sys; print(",".join(json.load(open(sys.argv[1]))["hosts"]))' "$DT_TMP/load.json")
dt_check "pg_host() reports the host the page asked for ($hosts)" test "$hosts" = "$want_host"

if ((TX)); then
  # Every good answer committed exactly its row; nothing else is in the table.
  read -r done_n other_n < <(dt_psql_direct -Atc \
    "select count(*) filter (where state = 'done'), count(*) filter (where state <> 'done') from $TABLE" |
    tr '|' ' ')
  dt_check "the table holds one committed row per request ($done_n of $((REQUESTS + WARM)), $other_n not done)" \
    test "$done_n" -eq $((REQUESTS + WARM)) -a "$other_n" -eq 0
  if dt_dropin; then
    # The children still hold their persistent connections; in transaction
    # mode an idle connection holds no lease.
    kids=$(pgrep -c -P "$SPID" || true)
    n=$(dt_pool_field sup php checked_out)
    dt_check "with $kids children holding persistent connections, 0 sessions are checked out (got $n)" \
      test "$n" = 0
    n=$(dt_pool_field sup php pool_mode || true)
    dt_check "forkpoolctl status --json: pool php has pool_mode transaction (got ${n:-nothing})" \
      test "$n" = transaction
  fi
fi

# Stop the server; nothing may stay checked out, the server keeps only the
# pool's idle connections (pool_size at most: the overflow ones are closed on return).
kill -TERM "$SPID"
rc=0
timeout 30 tail --pid="$SPID" -f /dev/null || rc=$?
dt_check "$SERVER stops on SIGTERM" test "$rc" -eq 0
dt_check "$SERVER logged no crash" \
  bash -c "! grep -iE 'segmentation|signal (11|6|7)|exit signal|core dumped|child .* exited on signal' '$SRV/error.log' '$SRV/server.log'"
out=$(dt_status_json sup | "$DT_PY" -c '
import json, sys
p = [p for p in json.load(sys.stdin)["pools"] if p["name"] == "php"][0]
print(p["checked_out"], p["checked_in"])')
read -r out_n idle_n <<<"$out"
sleep 0.5
n=$(dt_backends "$APP")
dt_check "forkpoolctl: 0 checked out after $SERVER stopped (got $out_n)" test "$out_n" = 0
dt_check "the server holds exactly the pool's $idle_n idle connections (got $n backends)" test "$n" = "$idle_n"
dt_check "the idle connections are at most pool_size $POOL_SIZE ($idle_n)" test "$idle_n" -le "$POOL_SIZE"
dt_stop sup
dt_finish
