# shellcheck shell=bash
# bench/lib.sh — what the benchmark scripts share: their Debian packages, the
# build, a scratch directory with a throwaway PostgreSQL in it, and cleaning
# up after themselves, and die() and usage(). A script sets ROOT, BUILD and
# PACKAGES, then sources this file.
#
# bench_scratch_start sets TOP (0755, so that the "postgres" user can reach
# it when we are root), SOCK ($TOP/forkpool.sock) and FORKPOOLD_PID (empty),
# and traps EXIT: forkpoold (if FORKPOOLD_PID is set) is stopped, then
# bench_cleanup_extra if the script defines it, then PostgreSQL; on failure
# the last lines of every file in BENCH_LOGS are shown; TOP is removed.

# Says what went wrong, as the script that sourced this file, and exits 1.
die() { echo "$(basename "$0"): error: $*" >&2; exit 1; }

# Prints the script's header comment (its usage) and exits with $1 (default 0).
usage() {
  sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
  exit "${1:-0}"
}

# Installs the missing ones of PACKAGES (needs root), or dies saying which.
bench_install_packages() {
  local missing=() p
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  [[ $(id -u) -eq 0 ]] || die "missing packages (${missing[*]}); run as root to install them"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q "${missing[@]}" >/dev/null
}

# bench_build TARGET...: configures BUILD (RelWithDebInfo) and builds the targets.
bench_build() {
  echo "building into $BUILD" >&2
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$BUILD" -j"$(nproc)" --target "$@" >/dev/null
}

bench_cleanup() {
  local rc=$? log
  set +e
  [[ -n $FORKPOOLD_PID ]] && kill -TERM "$FORKPOOLD_PID" 2>/dev/null && wait "$FORKPOOLD_PID"
  declare -F bench_cleanup_extra >/dev/null && bench_cleanup_extra
  "$ROOT/contrib/scratch-pg.sh" stop "$TOP/pg" >/dev/null 2>&1
  if ((rc != 0)); then
    for log in "${BENCH_LOGS[@]}"; do
      [[ -s $log ]] || continue
      echo "--- last lines of ${log##*/} ---" >&2
      tail -n 15 "$log" >&2
    done
  fi
  rm -rf "$TOP"
  exit "$rc"
}

# Makes TOP, starts PostgreSQL in it and sources its environment (PG*, FORKPOOL_TEST_PG_URL).
bench_scratch_start() {
  TOP=$(mktemp -d)
  chmod 0755 "$TOP"
  # shellcheck disable=SC2034  # used by the scripts that source this file
  SOCK=$TOP/forkpool.sock
  FORKPOOLD_PID=''
  BENCH_LOGS=("$TOP/forkpoold.log" "${BENCH_LOGS[@]}")
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
  "$ROOT/contrib/scratch-pg.sh" start "$TOP/pg" >&2
  # shellcheck source=/dev/null
  source "$TOP/pg/env"
}

BENCH_LOGS=()
