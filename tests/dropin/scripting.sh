#!/usr/bin/env bash
# dropin/ruby-pg, dropin/perl-dbd-pg — unmodified ruby-pg (PG.connect, always
# asynchronous) and Perl DBI + DBD::Pg programs: 8 processes, each 50 times
# connect, a prepared statement (ruby: every 10th time also
# PG::Connection#reset), disconnect, on a pool of 3 (the default
# reset_on_return, rollback): every iteration succeeds, every session is the pool's, never more than
# 3 backends.
#
#   scripting.sh ruby|perl (--dropin LIBPQ.SO.5 | --direct) --forkpoold PATH ...
# Perl finds the drop-in through LD_LIBRARY_PATH, Ruby through LD_PRELOAD.
LANG_=${1:-}
shift || true
case $LANG_ in
  ruby) ;;
  perl) DT_LOAD=libpath ;;
  *) echo "usage: $0 ruby|perl (--dropin LIB | --direct) --forkpoold PATH" >&2; exit 2 ;;
esac
# shellcheck source=tests/dropin/lib.sh
. "$(dirname "$0")/lib.sh"
DT_NAME=$LANG_
dt_init "$@"

PROCS=8
LOOPS=50
CAP=3
dt_pool sup app pool_size=$CAP max_overflow=0 pool_timeout=60
dt_start sup
APP=$(dt_app sup app)
if [[ $LANG_ == ruby ]]; then
  CMD=(ruby "$DT_HERE/loop.rb" "$(dt_conninfo sup app)" "$LOOPS")
elif dt_dropin; then
  CMD=(perl "$DT_HERE/loop.pl" "dbi:Pg:host=$(dt_dir sup);dbname=app" "$PGUSER" "$LOOPS")
else
  CMD=(perl "$DT_HERE/loop.pl"
    "dbi:Pg:host=$FORKPOOL_TEST_PG_SOCKET_DIR;port=$FORKPOOL_TEST_PG_PORT;dbname=$PGDATABASE;application_name=$APP"
    "$PGUSER" "$LOOPS")
fi
dt_log "$PROCS x: ${CMD[*]}"

dt_sampler_start "$APP"
pids=()
for ((i = 0; i < PROCS; i++)); do
  dt_run timeout 150 "${CMD[@]}" >"$DT_TMP/out.$i" 2>&1 &
  pids+=("$!")
done
for ((i = 0; i < PROCS; i++)); do
  rc=0
  wait "${pids[i]}" || rc=$?
  [[ $rc -eq 0 ]] || dt_fail "process $i exits 0 (status $rc): $(head -n 3 "$DT_TMP/out.$i")"
done
dt_sampler_stop

good=0
resets=0
all_pids=()
apps=()
for ((i = 0; i < PROCS; i++)); do
  line=$(grep '^ok=' "$DT_TMP/out.$i" || true)
  if [[ -z $line ]]; then
    echo "    process $i: no summary: $(tail -n 3 "$DT_TMP/out.$i")"
    continue
  fi
  n=${line#ok=}
  good=$((good + ${n%% *}))
  if [[ $line == *" resets="* ]]; then
    n=${line#* resets=}
    resets=$((resets + ${n%% *}))
  fi
  p=${line#* pids=}
  p=${p%% apps=*}
  a=${line#* apps=}
  a=${a%% errors=*}
  IFS=, read -r -a tmp <<<"$p"
  all_pids+=("${tmp[@]}")
  echo "    process $i: ${line%% pids=*}, ${#tmp[@]} backends, errors=${line##* errors=}"
  IFS=, read -r -a tmp <<<"$a"
  apps+=("${tmp[@]}")
done
want=$((PROCS * LOOPS))
dt_check "$good of $want connect/query/disconnect succeeded" test "$good" -eq "$want"
if [[ $LANG_ == ruby ]]; then
  dt_check "PG::Connection#reset gave a working session $((PROCS * LOOPS / 10)) times ($resets)" \
    test "$resets" -eq $((PROCS * LOOPS / 10))
fi
uniq_apps=$(printf '%s\n' "${apps[@]}" | sort -u | paste -sd, -)
dt_check "every session has application_name $APP (got $uniq_apps)" test "$uniq_apps" = "$APP"
npids=$(printf '%s\n' "${all_pids[@]}" | sort -u | grep -c . || true)
if dt_dropin; then
  dt_check "at most $CAP distinct backends served $want connects (got $npids)" test "$npids" -le "$CAP"
  n=$(dt_pool_field sup app checked_out)
  dt_check "forkpoolctl: 0 connections checked out at the end (got $n)" test "$n" = 0
else
  dt_log "direct: $npids backends"
fi
dt_check_cap "$CAP" "$PROCS"
dt_stop sup
dt_finish
