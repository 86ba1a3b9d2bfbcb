#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2317  # literal quotes around $ONLY; trap handlers
# tests/run.sh — the test command of forkpool.
#
#   ./tests/run.sh [--no-asan] [--no-fuzz] [--only REGEX] [--soak MINUTES]
#
# 1. Installs the Debian packages the build and the tests need (only the
#    missing ones; needs root when something is missing).
# 2. Configures and builds two trees: build/ (RelWithDebInfo) and build-asan/
#    (Debug, -DFORKPOOL_SANITIZE=ON), both with -DFORKPOOL_WERROR=ON; build/
#    has the install prefix /usr, as a distribution's package. They live
#    in the repository (gitignored), or under $FORKPOOL_BUILD_DIR when that is
#    set.
# 3. Runs the static checks (static/clang-format, static/cppcheck,
#    static/shellcheck, static/includes, static/man) on the project's C
#    files, shell scripts and manual pages; a finding fails the run.
# 4. Starts a throwaway PostgreSQL with contrib/scratch-pg.sh and exports its
#    connection settings (PGHOST, PGPORT, PGUSER, PGDATABASE,
#    FORKPOOL_TEST_PG_URL, FORKPOOL_TEST_PG_TCP_URL,
#    FORKPOOL_TEST_PG_SOCKET_DIR, FORKPOOL_TEST_PG_PORT) to the tests, and a
#    throwaway MariaDB with contrib/scratch-mariadb.sh (FORKPOOL_TEST_MY_URL,
#    FORKPOOL_TEST_MY_TCP_URL, FORKPOOL_TEST_MY_SOCKET, FORKPOOL_TEST_MY_PORT,
#    FORKPOOL_TEST_MY_USER, FORKPOOL_TEST_MY_PASSWORD,
#    FORKPOOL_TEST_MY_DATABASE). Both are stopped on exit, even on a signal.
# 5. Runs ctest in each tree (the Python package's tests, python/*, among them): tests labelled "unit" in parallel (-j2), then
#    all other tests (label "integration") serially. Tests without a TIMEOUT
#    property get 300 s.
# 5b. Builds build-tsan/ (-DFORKPOOL_TSAN=ON: ThreadSanitizer) with only the
#    library, the programs and the threaded integration tests
#    ($TSAN_TESTS), and runs those.
# 6. Builds a further tree, build-fuzz/ (clang, -DFORKPOOL_FUZZ=ON: libFuzzer,
#    ASan, UBSan), and runs each fuzz target (fuzz/fuzz_proto,
#    fuzz/fuzz_segment, fuzz/fuzz_state) for $FORKPOOL_FUZZ_SECONDS (default 20) seconds on
#    fresh seeds and tests/fuzz/corpus/<target>/. A crash fails the run and
#    leaves the input in build-fuzz/fuzz-work/<target>/artifacts/.
#
# Options:
#   --no-asan       skip the sanitizer builds (ASan, TSan) and their test runs
#   --no-fuzz       skip the fuzzing tree and its runs
#   --only REGEX    run only the tests whose name matches REGEX (ctest -R;
#                   fuzz targets are named fuzz/<target>, static checks
#                   static/<tool>)
#   --soak MINUTES  run the churn test (integration/it_churn: random leases,
#                   kills and restarts; 60 s by default) for MINUTES minutes;
#                   e.g. --soak 10 --only it_churn --no-asan --no-fuzz
#
# Exits non-zero if anything failed; the last line is a summary.
set -euo pipefail

PROG=tests/run.sh
START_TIME=$SECONDS

usage() {
  sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit "${1:-2}"
}

ASAN=1
FUZZ=1
ONLY=
CHURN_SECONDS=60
while [[ $# -gt 0 ]]; do
  case $1 in
    --no-asan) ASAN=0 ;;
    --no-fuzz) FUZZ=0 ;;
    --only)
      [[ $# -ge 2 && -n $2 ]] || { echo "$PROG: --only needs a REGEX" >&2; exit 2; }
      ONLY=$2
      shift
      ;;
    --only=*) ONLY=${1#--only=} ;;
    --soak)
      [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] ||
        { echo "$PROG: --soak needs a whole number of minutes >= 1" >&2; exit 2; }
      CHURN_SECONDS=$(($2 * 60))
      shift
      ;;
    -h | --help) usage 0 ;;
    *) echo "$PROG: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
cd "$REPO"
BUILD_ROOT=${FORKPOOL_BUILD_DIR:-$REPO}
JOBS=$(nproc 2>/dev/null || echo 2)

say() { echo "==> $*"; }

# ---------------------------------------------------------------- packages
# The release's versioned package names (the tests find the matching programs
# themselves): Debian 12 "bookworm" and Debian 13 "trixie" are tested.
RELEASE=$(sed -n "s/^VERSION_CODENAME=//p" /etc/os-release 2>/dev/null || true)
case $RELEASE in
  bookworm) CLANG_VERSION=14 PHP_VERSION=8.2 ;;
  trixie) CLANG_VERSION=19 PHP_VERSION=8.4 ;;
  *)
    echo "$PROG: Debian ${RELEASE:-(unknown release)} is not one this suite knows" \
      "(bookworm, trixie): add its clang and PHP versions to tests/run.sh" >&2
    exit 1
    ;;
esac
PACKAGES=(
  build-essential cmake pkg-config
  libpq-dev libssl-dev postgresql postgresql-contrib
  libmariadb-dev mariadb-server mariadb-client
  libsystemd-dev libinih-dev libjson-c-dev libcmocka-dev
  clang "libclang-rt-$CLANG_VERSION-dev"
  clang-format cppcheck shellcheck groff-base
  python3 procps iproute2 util-linux curl
  file # cpack -G DEB (tests/package: dpkg-shlibdeps)
  # tests/dropin: unmodified libpq clients and the servers they run in
  python3-psycopg2 python3-psycopg python3-sqlalchemy gunicorn
  apache2 "libapache2-mod-php$PHP_VERSION" "php$PHP_VERSION-cli" "php$PHP_VERSION-fpm"
  "php$PHP_VERSION-pgsql"
  ruby-pg libdbi-perl libdbd-pg-perl
  # The Python package's tests (python/tests, ctest python/*).
  python3-flask python3-flask-sqlalchemy python3-pymysql python3-mysqldb
  python3-setuptools python3-pip python3-wheel
)

install_packages() {
  local missing=() p status
  for p in "${PACKAGES[@]}"; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [[ $status == "install ok installed" ]] || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0

  if [[ $(id -u) -ne 0 ]]; then
    echo "$PROG: missing Debian packages: ${missing[*]}" >&2
    echo "$PROG: install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 1
  fi
  say "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for a concurrent apt/dpkg run instead of failing on its lock.
  local lock=(-o DPkg::Lock::Timeout=600)
  apt-get -q "${lock[@]}" update </dev/null ||
    { echo "$PROG: FAIL: apt-get update failed" >&2; exit 1; }
  apt-get -q "${lock[@]}" install -y --no-install-recommends "${missing[@]}" </dev/null ||
    { echo "$PROG: FAIL: apt-get install ${missing[*]} failed" >&2; exit 1; }
}

# ---------------------------------------------------------------- results
FAILURES=()
fail() { FAILURES+=("$1"); echo "$PROG: FAILED: $1" >&2; }

# ---------------------------------------------------------------- build
# build_tree NAME CMAKE-ARGS... ; returns non-zero if configure or build failed.
build_tree() {
  local name=$1 dir=$BUILD_ROOT/$1
  shift
  say "configuring $name"
  if ! run cmake -S "$REPO" -B "$dir" "$@"; then
    fail "$name: cmake configure"
    return 1
  fi
  say "building $name (-j$JOBS)"
  if ! run cmake --build "$dir" -j "$JOBS"; then
    fail "$name: build"
    return 1
  fi
}

# ---------------------------------------------------------------- PostgreSQL
PG_DIR=
stop_pg() {
  if [[ -n $PG_DIR ]]; then
    "$REPO/contrib/scratch-pg.sh" stop "$PG_DIR" ||
      echo "$PROG: warning: could not stop the scratch PostgreSQL in $PG_DIR" >&2
    # scratch-pg.sh removes PG_DIR; this catches a start that failed early.
    rm -rf -- "$PG_DIR"
    PG_DIR=
  fi
}
# Long-running steps run as a background child that we wait for, so that a
# signal is handled at once (bash defers traps while a foreground command runs,
# and skips the INT trap when the command, like ctest, catches SIGINT itself).
# The child gets default signal dispositions back and stdin from /dev/null.
CHILD=
run() {
  (trap - INT QUIT TERM HUP; exec "$@") &
  CHILD=$!
  local rc=0
  wait "$CHILD" || rc=$?
  CHILD=
  return "$rc"
}
on_signal() {
  local sig=$1 rc=$2 i
  set +e
  trap '' INT TERM HUP
  echo "$PROG: interrupted (SIG$sig), cleaning up" >&2
  if [[ -n $CHILD ]]; then
    if [[ $(ps -o pgid= -p $$ | tr -d ' ') == "$$" ]]; then
      # We lead our process group: signal everything we started (this shell
      # ignores it now).
      kill -"$sig" -- -$$ 2>/dev/null
    else
      # The step and its direct children (ctest's running tests).
      pkill -"$sig" -P "$CHILD" 2>/dev/null
      kill -"$sig" "$CHILD" 2>/dev/null
    fi
    for ((i = 0; i < 100; i++)); do
      kill -0 "$CHILD" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$CHILD" 2>/dev/null
    wait "$CHILD" 2>/dev/null
  fi
  exit "$rc"
}
on_exit() {
  local rc=$?
  set +e
  stop_pg
  stop_my
  exit "$rc"
}
trap on_exit EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

# A temporary directory that the server's user can reach: when we are root the
# server runs as "postgres", so honour $TMPDIR only if that user can traverse it
# (and the Unix socket path stays short); otherwise use /tmp.
pg_tmp_base() {
  local base=${TMPDIR:-/tmp}
  base=${base%/}
  [[ -n $base && -d $base ]] || base=/tmp
  if (( ${#base} > 60 )); then base=/tmp; fi
  if [[ $base != /tmp && $(id -u) -eq 0 ]] && getent passwd postgres >/dev/null &&
     ! runuser -u postgres -- test -x "$base" -a -w "$base" 2>/dev/null; then
    base=/tmp
  fi
  echo "$base"
}

start_pg() {
  local base
  base=$(pg_tmp_base)
  PG_DIR=$(mktemp -d "$base/forkpool-pg.XXXXXX")
  chmod 0755 "$PG_DIR"
  say "starting scratch PostgreSQL"
  run "$REPO/contrib/scratch-pg.sh" start "$PG_DIR" || return 1
  # Tests see only the scratch server's settings, never the caller's libpq
  # environment.
  while IFS= read -r v; do unset "$v"; done < <(compgen -e | grep '^PG' || true)
  # shellcheck disable=SC1091
  . "$PG_DIR/env"
}

# ---------------------------------------------------------------- MariaDB
MY_DIR=
stop_my() {
  if [[ -n $MY_DIR ]]; then
    "$REPO/contrib/scratch-mariadb.sh" stop "$MY_DIR" ||
      echo "$PROG: warning: could not stop the scratch MariaDB in $MY_DIR" >&2
    rm -rf -- "$MY_DIR"
    MY_DIR=
  fi
}

start_my() {
  local base
  base=$(pg_tmp_base)
  # As root the server runs as "mysql": it must reach the directory too.
  if [[ $base != /tmp && $(id -u) -eq 0 ]] && getent passwd mysql >/dev/null &&
     ! runuser -u mysql -- test -x "$base" -a -w "$base" 2>/dev/null; then
    base=/tmp
  fi
  MY_DIR=$(mktemp -d "$base/forkpool-my.XXXXXX")
  chmod 0755 "$MY_DIR"
  say "starting scratch MariaDB"
  run "$REPO/contrib/scratch-mariadb.sh" start "$MY_DIR" || return 1
  # Tests see only the scratch server's settings, never the caller's client
  # environment.
  unset MYSQL_HOST MYSQL_TCP_PORT MYSQL_UNIX_PORT MYSQL_PWD
  # shellcheck disable=SC1091
  . "$MY_DIR/env"
}

# ---------------------------------------------------------------- tests
# run_ctest NAME [ENV=VALUE...]
run_ctest() {
  local name=$1 dir=$BUILD_ROOT/$1
  shift
  local -a sel=()
  [[ -n $ONLY ]] && sel=(-R "$ONLY")

  local total
  total=$(cd "$dir" && ctest -N "${sel[@]}" | sed -n 's/^Total Tests: *//p')
  if [[ ${total:-0} -eq 0 ]]; then
    # --only may select only static checks or fuzz targets.
    if [[ -n $ONLY ]] && checks_selected; then
      say "$name: no tests match '$ONLY'"
    else
      fail "$name: no tests found${ONLY:+ matching '$ONLY'}"
    fi
    return
  fi

  say "$name: unit tests (-j2)"
  if ! run env -C "$dir" "$@" ctest --output-on-failure --no-tests=ignore --timeout 300 \
          -L '^unit$' -j2 "${sel[@]}"; then
    fail "$name: unit tests"
  fi
  # Everything that is not a unit test (label "integration", and anything
  # unlabelled so that no test is silently skipped), serially: these share
  # the PostgreSQL server.
  say "$name: integration tests (serial)"
  if ! run env -C "$dir" "$@" ctest --output-on-failure --no-tests=ignore --timeout 300 \
          -LE '^unit$' "${sel[@]}"; then
    fail "$name: integration tests"
  fi
  # The churn test's figures, which ctest shows only when it fails.
  local log=$dir/Testing/Temporary/LastTest.log
  if [[ -f $log ]] && grep -q '^churn figures' "$log"; then
    say "$name: churn figures"
    sed -n '/^churn figures/,/^  after:/p' "$log"
  fi
}

# ---------------------------------------------------------------- fuzzing
FUZZ_TARGETS=(fuzz_proto fuzz_segment fuzz_state)
FUZZ_SECONDS=${FORKPOOL_FUZZ_SECONDS:-20}
[[ $FUZZ_SECONDS =~ ^[1-9][0-9]*$ ]] ||
  { echo "$PROG: FORKPOOL_FUZZ_SECONDS must be a whole number of seconds >= 1" >&2; exit 2; }

# fuzz_selected TARGET: whether --only (if given) selects fuzz/TARGET.
fuzz_selected() { [[ -z $ONLY ]] || grep -Eq -- "$ONLY" <<<"fuzz/$1"; }

# checks_selected: whether --only selects a static check or a fuzz target.
checks_selected() {
  local c
  for c in clang-format cppcheck shellcheck includes man; do static_selected "$c" && return 0; done
  for c in "${FUZZ_TARGETS[@]}"; do fuzz_selected "$c" && return 0; done
  return 1
}

# Runs every selected fuzz target of build-fuzz for FUZZ_SECONDS. Inputs that
# add coverage accumulate in build-fuzz/fuzz-work/<target>/corpus.
run_fuzz() {
  local dir=$BUILD_ROOT/build-fuzz t work max_len
  rm -rf -- "$dir/fuzz-seeds"
  if ! run "$dir/tests/fuzz/fuzz_seeds" "$dir/fuzz-seeds"; then
    fail "build-fuzz: fuzz_seeds"
    return
  fi
  for t in "${FUZZ_TARGETS[@]}"; do
    fuzz_selected "$t" || continue
    work=$dir/fuzz-work/$t
    mkdir -p "$work/corpus" "$work/artifacts"
    # Room for oversized messages; segment images are compressed (fuzz_segment.c).
    case $t in fuzz_proto | fuzz_state) max_len=8192 ;; *) max_len=65536 ;; esac
    say "build-fuzz: fuzz/$t for ${FUZZ_SECONDS}s"
    if run "$dir/tests/fuzz/$t" -max_total_time="$FUZZ_SECONDS" -timeout=10 \
         -rss_limit_mb=2048 -max_len="$max_len" -print_final_stats=1 \
         -artifact_prefix="$work/artifacts/" \
         "$work/corpus" "$dir/fuzz-seeds/$t" "$REPO/tests/fuzz/corpus/$t" \
         >"$work/log" 2>&1; then
      grep -E '^Done [0-9]+ runs' "$work/log" || true
    else
      tail -n 40 "$work/log" >&2
      fail "fuzz/$t: crash; input in $work/artifacts/ (replay: $dir/tests/fuzz/$t FILE)"
    fi
  done
}

# ---------------------------------------------------------------- static checks
# On what the project owns: its C sources and headers, its shell scripts.
# Each check is named static/<tool> for --only; a finding fails the run.
static_selected() { [[ -z $ONLY ]] || grep -Eq -- "$ONLY" <<<"static/$1"; }

project_c_files() {
  find adopt agent base bench contrib ctl dropin include shm tests worker -type f -name '*.[ch]' | sort
}
project_shell_files() {
  { find bench contrib tests -type f -name '*.sh'; find contrib/debian -type f -perm -u+x; } | sort
}

run_static_checks() {
  local -a c_files sh_files
  mapfile -t c_files < <(project_c_files)
  mapfile -t sh_files < <(project_shell_files)

  # .clang-format is the style; git clang-format applies it to a change.
  if static_selected clang-format; then
    say "static/clang-format (${#c_files[@]} files)"
    run clang-format --dry-run --Werror "${c_files[@]}" ||
      fail "static/clang-format: run clang-format -i on the files above"
  fi
  # tests/static/cppcheck.cfg describes what cppcheck cannot read (cmocka's
  # macros, Linux's accept4 and mmap); tests/static/cppcheck-suppressions.txt
  # lists, with reasons, what it gets wrong.
  if static_selected cppcheck; then
    say "static/cppcheck"
    run cppcheck -q --std=c11 --enable=warning,portability,performance --error-exitcode=1 \
      --inline-suppr --suppressions-list=tests/static/cppcheck-suppressions.txt \
      --library=posix --library=tests/static/cppcheck.cfg \
      -D_GNU_SOURCE '-D_Noreturn=__attribute__((noreturn))' '-DFP_REAL_LIBPQ="libpq.so.5"' \
      -I include -I "$BUILD_ROOT/build/include" -I base -I shm -I adopt -I agent -I agent/drivers -I ctl -I worker \
      -I dropin -I "$BUILD_ROOT/build/dropin/gen" \
      -I tests/integration -j "$JOBS" "${c_files[@]}" || fail "static/cppcheck"
  fi
  if static_selected shellcheck; then
    say "static/shellcheck (${#sh_files[@]} scripts)"
    run shellcheck "${sh_files[@]}" || fail "static/shellcheck"
  fi
  # The dependency rule between the rooms, and no include cycle between
  # modules (tests/static/check_includes.sh).
  if static_selected includes; then
    say "static/includes"
    run tests/static/check_includes.sh || fail "static/includes"
  fi
  # The manual pages: groff's warnings (-ww) are findings.
  if static_selected man; then
    local page out warnings=
    say "static/man"
    for page in man/*.[1-8]; do
      out=$(LC_ALL=C.UTF-8 groff -man -Tutf8 -ww -z "$page" 2>&1) || out+=" (groff failed)"
      [[ -z $out ]] || warnings+="$page: $out"$'\n'
    done
    if [[ -n $warnings ]]; then
      printf '%s' "$warnings" >&2
      fail "static/man"
    fi
  fi
}

# ---------------------------------------------------------------- main
install_packages

BUILT=()
# The project's own runs treat warnings as errors (users' builds do not).
# build/ is configured as a distribution would (prefix /usr), for the tests of
# its install tree and its Debian package (tests/package/).
# Every configure states the churn test's length, so that a --soak run's does not stay.
if build_tree build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFORKPOOL_SANITIZE=OFF -DFORKPOOL_WERROR=ON \
     -DCMAKE_INSTALL_PREFIX=/usr -DFORKPOOL_CHURN_SECONDS="$CHURN_SECONDS"; then
  BUILT+=(build)
fi
if [[ $ASAN -eq 1 ]]; then
  if build_tree build-asan -DCMAKE_BUILD_TYPE=Debug -DFORKPOOL_SANITIZE=ON -DFORKPOOL_WERROR=ON \
       -DFORKPOOL_CHURN_SECONDS="$CHURN_SECONDS"; then
    BUILT+=(build-asan)
  fi
fi

# The threaded integration tests, under ThreadSanitizer (build-tsan).
TSAN_TESTS=(it_core it_libpq)
tsan_selected() {
  local t
  for t in "${TSAN_TESTS[@]}"; do
    [[ -z $ONLY ]] || grep -Eq -- "$ONLY" <<<"integration/$t" && return 0
  done
  return 1
}
TSAN_BUILT=0
if [[ $ASAN -eq 1 ]] && tsan_selected; then
  say "configuring build-tsan"
  if run cmake -S "$REPO" -B "$BUILD_ROOT/build-tsan" -DCMAKE_BUILD_TYPE=Debug -DFORKPOOL_TSAN=ON \
       -DFORKPOOL_WERROR=ON &&
     say "building build-tsan (threaded tests only)" &&
     run cmake --build "$BUILD_ROOT/build-tsan" -j "$JOBS" --target forkpoold forkpoolctl \
       "${TSAN_TESTS[@]}"; then
    TSAN_BUILT=1
  else
    fail "build-tsan: build"
  fi
fi

run_static_checks

FUZZ_BUILT=0
if [[ $FUZZ -eq 1 ]]; then
  any=0
  for t in "${FUZZ_TARGETS[@]}"; do fuzz_selected "$t" && any=1; done
  if [[ $any -eq 1 ]] &&
     build_tree build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo \
       -DFORKPOOL_FUZZ=ON -DFORKPOOL_WERROR=ON; then
    FUZZ_BUILT=1
  fi
fi

if [[ ${#BUILT[@]} -gt 0 ]]; then
  if ! start_pg; then
    fail "scratch PostgreSQL did not start"
  elif ! start_my; then
    fail "scratch MariaDB did not start"
  else
    for tree in "${BUILT[@]}"; do
      if [[ $tree == build-asan ]]; then
        # LeakSanitizer is on; tests/lsan-suppressions.txt lists, with reasons,
        # what it must not report. verify_asan_link_order=0: uninstrumented
        # programs (psql in it_dropin) load the instrumented libpq drop-in.
        run_ctest "$tree" \
          "ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:verify_asan_link_order=0}" \
          "LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$REPO/tests/lsan-suppressions.txt:print_suppressions=0}" \
          "UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
      else
        run_ctest "$tree"
      fi
    done
    if [[ $TSAN_BUILT -eq 1 ]]; then
      regex=$(IFS='|'; echo "^integration/(${TSAN_TESTS[*]})\$")
      say "build-tsan: threaded integration tests"
      if ! run env -C "$BUILD_ROOT/build-tsan" \
             "TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1}" \
             ctest --output-on-failure --timeout 300 -R "$regex"; then
        fail "build-tsan: threaded integration tests"
      fi
    fi
  fi
  stop_pg
  stop_my
fi
[[ $FUZZ_BUILT -eq 1 ]] && run_fuzz

elapsed=$((SECONDS - START_TIME))
trees="build"
[[ $CHURN_SECONDS -ne 60 ]] && trees="churn ${CHURN_SECONDS}s, $trees"
[[ $ASAN -eq 1 ]] && trees+=" + build-asan"
[[ $TSAN_BUILT -eq 1 ]] && trees+=" + build-tsan"
[[ $FUZZ -eq 1 ]] && trees+=" + build-fuzz"
if [[ ${#FAILURES[@]} -eq 0 ]]; then
  echo "$PROG: PASS ($trees${ONLY:+, only '$ONLY'}) in ${elapsed}s"
  exit 0
fi
msg=$(printf '%s; ' "${FAILURES[@]}")
echo "$PROG: FAIL ($trees${ONLY:+, only '$ONLY'}) in ${elapsed}s: ${msg%; }"
exit 1
