#!/usr/bin/env bash
# shellcheck disable=SC2016,SC2034,SC2317  # dpkg-query formats; EXIT_HOOK is debian-lib.sh's; trap handlers
# tests/package/deb_install_test.sh — the Debian package on a fresh system of
# this machine's Debian release: installed with apt, booted with systemd,
# serving a lease from a real PostgreSQL, stopped and purged.
#
#   deb_install_test.sh DIR
#
# 1. Builds the .deb from the repository (cmake with the prefix /usr into
#    DIR/build, cpack -G DEB into DIR/deb). The build packages must be
#    installed (tests/run.sh installs them).
# 2. Makes a minimal root of this machine's release with debootstrap in
#    DIR/pristine if there is none yet (kept for later runs), and copies it to
#    a fresh DIR/root.
# 3. In DIR/root (chroot, services kept from starting): apt-get install
#    --no-install-recommends ./forkpool_*.deb, so that its dependencies (and
#    only they) come from the mirror; checks that the maintainer scripts
#    created the forkpool system user and group (sysusers.d), /run/forkpool
#    and /etc/forkpool (tmpfiles.d), that the units, manual pages, header,
#    pkg-config file, drop-in and library are in place (pkg-config, the
#    ldconfig cache), and that systemd-analyze verify accepts the units. Then
#    installs PostgreSQL, its client, pkg-config and systemd-sysv, writes
#    /etc/forkpool/forkpool.conf with one pool "main" on a local database,
#    and adds a worker's user "app" to the group forkpool.
# 4. Boots DIR/root with systemd-nspawn --boot (systemd is PID 1 in it) and,
#    in it: creates the database role and database; systemctl enable --now
#    forkpoold.socket forkpoold.service; checks that both are active and
#    forkpoold runs as forkpool; forkpoolctl status; leases a connection with
#    psql through the libpq drop-in as "app", who has no database role of
#    its own (only the pool's connection can answer); leases again after
#    systemctl restart (the connection comes back from the fd store) and
#    checks a systemctl reload (a new pool_size); stops the service and checks
#    that it ended cleanly (result success, exit status 0) while the socket
#    stays; leases while it is stopped (the socket unit starts it) and stops
#    it again; checks that every start took the socket unit's socket and
#    that the journal holds no error; apt-get purge forkpool, and checks that
#    the units, programs and library are gone and the user stays.
# 5. Powers the root off, unmounts what it mounted, and removes DIR/root
#    (kept with FORKPOOL_KEEP_ROOT=1, for a look inside).
#
# Needs root (debootstrap, chroot, mount, systemd-nspawn from
# systemd-container, which is installed if missing) and a reachable Debian
# mirror (DEBIAN_MIRROR, default http://deb.debian.org/debian). DIR must be
# outside the repository. Logs are in DIR/logs. Exits 0 when every check
# passed; each failed check prints one line. Not part of tests/run.sh: a run
# takes minutes (debootstrap, the packages, the boot).
set -euo pipefail

PROG=deb_install_test.sh
# shellcheck source=contrib/debian-lib.sh disable=SC1091
source "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/../../contrib/debian-lib.sh"

[[ $# -eq 1 ]] || { sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, chroot, mount, systemd-nspawn)"
DIR=$(debian_abs_dir "$1")
RELEASE=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release)
[[ -n $RELEASE ]] || die "this machine's /etc/os-release names no Debian release"
ROOT=$DIR/root
LOGS=$DIR/logs
MACHINE=forkpool-deb-test
BOOT_TIMEOUT=180
mkdir -p "$LOGS"

STATUS=0
FAILED=()
ok() { echo "  ok   $1"; }
bad() { echo "  FAIL $1" >&2; STATUS=1; FAILED+=("$1"); }
# check NAME COMMAND...: COMMAND's success is check NAME's.
check() {
  local name=$1
  shift
  if "$@"; then ok "$name"; else bad "$name"; fi
}
# check_eq NAME EXPECTED ACTUAL
check_eq() {
  if [[ $3 == "$2" ]]; then ok "$1"; else bad "$1: '$3', expected '$2'"; fi
}

# ---------------------------------------------------------------- 1. the .deb
for tool in cmake cpack dpkg-shlibdeps; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "$tool is missing: install the build packages first (tests/run.sh does)"
done
command -v systemd-nspawn >/dev/null 2>&1 || { echo "==> installing systemd-container"; apt_install systemd-container; }

echo "==> building the .deb ($DIR/build)"
if ! { cmake -S "$REPO" -B "$DIR/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
         -DCMAKE_INSTALL_PREFIX=/usr -DFORKPOOL_TESTS=OFF &&
       cmake --build "$DIR/build" -j "$(nproc)" &&
       rm -rf "$DIR/deb" &&
       cpack -G DEB --config "$DIR/build/CPackConfig.cmake" -B "$DIR/deb"; } >"$LOGS/build.log" 2>&1; then
  tail -n 30 "$LOGS/build.log" >&2
  die "the build of the .deb failed (log: $LOGS/build.log)"
fi
debs=("$DIR"/deb/forkpool_*.deb)
[[ ${#debs[@]} -eq 1 && -f ${debs[0]} ]] || die "cpack made no single forkpool_*.deb in $DIR/deb"
DEB=${debs[0]}
VERSION=$(dpkg-deb -f "$DEB" Version)
echo "    $(basename "$DEB"); Depends: $(dpkg-deb -f "$DEB" Depends)"

# ---------------------------------------------------------------- 2. the root
debian_root_make "$RELEASE" "$DIR/pristine"
NSPAWN=
stop_root() {
  [[ -n $NSPAWN ]] || return 0
  # SIGTERM: systemd-nspawn asks the root's systemd to power off.
  kill -TERM "$NSPAWN" 2>/dev/null || true
  local i
  for ((i = 0; i < 120; i++)); do
    kill -0 "$NSPAWN" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$NSPAWN" 2>/dev/null; then
    echo "$PROG: warning: the root did not power off in 60 s, killing it" >&2
    kill -KILL "$NSPAWN" 2>/dev/null || true
  fi
  wait "$NSPAWN" 2>/dev/null || true
  NSPAWN=
}
remove_root() {
  stop_root
  unmount_all
  if [[ ${FORKPOOL_KEEP_ROOT:-0} == 1 ]]; then
    echo "==> the root stays in $ROOT"
  else
    rm -rf --one-file-system -- "$ROOT"
  fi
}
EXIT_HOOK=remove_root
debian_traps

rm -rf --one-file-system -- "$ROOT"
cp -a --reflink=auto "$DIR/pristine" "$ROOT"
debian_root_no_services "$ROOT"
mount_system "$ROOT"

# ---------------------------------------------------------------- 3. install
echo "==> apt-get install --no-install-recommends ./$(basename "$DEB") in a fresh Debian $RELEASE root"
cp "$DEB" "$ROOT/tmp/"
if ! { in_root "$ROOT" apt-get -q update &&
       in_root "$ROOT" sh -c "cd /tmp && apt-get -q install -y --no-install-recommends ./$(basename "$DEB")"; } \
     >"$LOGS/install.log" 2>&1; then
  tail -n 30 "$LOGS/install.log" >&2
  die "apt-get install of the .deb failed (log: $LOGS/install.log)"
fi
sed -n '/^The following NEW packages/,/^[0-9]* upgraded/p' "$LOGS/install.log"

echo "==> what the package put in place"
check_eq "dpkg: forkpool $VERSION installed" "install ok installed $VERSION" \
  "$(in_root "$ROOT" dpkg-query -W -f '${Status} ${Version}' forkpool 2>&1)"
pw=$(in_root "$ROOT" getent passwd forkpool || true)
IFS=: read -r _ _ fp_uid fp_gid _ fp_home fp_shell <<<"$pw"
if [[ -n $pw && $fp_uid -lt 1000 ]]; then
  ok "postinst: system user forkpool (uid $fp_uid, home $fp_home, shell $fp_shell)"
else
  bad "postinst: no system user forkpool (getent: '$pw')"
fi
gr=$(in_root "$ROOT" getent group forkpool || true)
check_eq "postinst: group forkpool is the user's primary group" "$fp_gid" "$(cut -d: -f3 <<<"$gr")"
check_eq "postinst: /run/forkpool (tmpfiles.d)" "forkpool:forkpool 755" \
  "$(in_root "$ROOT" stat -c '%U:%G %a' /run/forkpool 2>&1)"
check_eq "postinst: /etc/forkpool (tmpfiles.d)" "root:root 755" \
  "$(in_root "$ROOT" stat -c '%U:%G %a' /etc/forkpool 2>&1)"
files=$(in_root "$ROOT" dpkg -L forkpool)
for f in /usr/sbin/forkpoold /usr/bin/forkpoolctl /usr/include/forkpool.h \
         /lib/systemd/system/forkpoold.service /lib/systemd/system/forkpoold.socket \
         /usr/lib/sysusers.d/forkpool.conf /usr/lib/tmpfiles.d/forkpool.conf \
         /usr/share/man/man8/forkpoold.8 /usr/share/man/man1/forkpoolctl.1 \
         /usr/share/man/man5/forkpool.conf.5 /usr/share/man/man3/libforkpool.3 \
         /usr/share/doc/forkpool/forkpool.conf.example; do
  if grep -qx -- "$f" <<<"$files" && [[ -e $ROOT$f ]]; then ok "installed: $f"; else bad "not installed: $f"; fi
done
PC=$(grep '/pkgconfig/forkpool\.pc$' <<<"$files" || true)
DROPIN=$(grep '/forkpool/libpq\.so\.5$' <<<"$files" || true)
check "installed: forkpool.pc (${PC:-none})" test -n "$PC" -a -e "$ROOT$PC"
check "installed: the libpq drop-in (${DROPIN:-none})" test -n "$DROPIN" -a -e "$ROOT$DROPIN"
check "ldconfig: libforkpool.so.0 in the cache" \
  grep -q 'libforkpool\.so\.0 ' <<<"$(in_root "$ROOT" ldconfig -p)"
check_eq "unit: ExecStart names the installed forkpoold" \
  "ExecStart=/usr/sbin/forkpoold --config /etc/forkpool/forkpool.conf" \
  "$(grep '^ExecStart=' "$ROOT/lib/systemd/system/forkpoold.service")"
check_eq "forkpoold --version" "forkpoold $VERSION" \
  "$(in_root "$ROOT" forkpoold --version 2>&1 | head -n 1)"
if in_root "$ROOT" systemd-analyze verify forkpoold.socket forkpoold.service >"$LOGS/verify.log" 2>&1 &&
   [[ ! -s $LOGS/verify.log ]]; then
  ok "systemd-analyze verify forkpoold.socket forkpoold.service"
else
  bad "systemd-analyze verify: $(tr '\n' ' ' <"$LOGS/verify.log")"
fi

echo "==> installing PostgreSQL, pkg-config and systemd-sysv in the root"
if ! in_root "$ROOT" apt-get -q install -y --no-install-recommends \
       postgresql postgresql-client pkg-config systemd-sysv >"$LOGS/install-more.log" 2>&1; then
  tail -n 30 "$LOGS/install-more.log" >&2
  die "apt-get install of PostgreSQL in the root failed (log: $LOGS/install-more.log)"
fi
check_eq "pkg-config --modversion forkpool" "$VERSION" \
  "$(in_root "$ROOT" pkg-config --modversion forkpool 2>&1)"
check_eq "pkg-config --libs forkpool" "-lforkpool" \
  "$(in_root "$ROOT" pkg-config --libs forkpool 2>&1 | sed 's/ *$//')"

# The configuration the administrator writes; tmpfiles.d gives it its mode.
cat >"$ROOT/etc/forkpool/forkpool.conf" <<'EOF'
[forkpool]
socket = /run/forkpool/forkpool.sock
allow_groups = forkpool
log_level = info

[pool main]
url = postgresql://forkpool@/fpdb?host=/run/postgresql
pool_size = 2
max_overflow = 2
EOF
in_root "$ROOT" systemd-tmpfiles --create forkpool.conf
check_eq "tmpfiles.d: the configuration's mode and owner" "forkpool:forkpool 600" \
  "$(in_root "$ROOT" stat -c '%U:%G %a' /etc/forkpool/forkpool.conf 2>&1)"
# A worker's user: in the group forkpool, with no database role of its own.
in_root "$ROOT" useradd --create-home --groups forkpool app
in_root "$ROOT" rm -f /usr/sbin/policy-rc.d # the booted system starts what it enables
unmount_all

# ---------------------------------------------------------------- 4. boot
echo "==> booting the root (systemd-nspawn --boot)"
# Without systemd on this machine there is no machined to register with, nor a
# scope to create: the root stays in the cgroup of this script.
nspawn_opts=()
[[ -d /run/systemd/system ]] || nspawn_opts=(--register=no --keep-unit)
systemd-nspawn --quiet --boot "${nspawn_opts[@]}" -M "$MACHINE" -D "$ROOT" \
  </dev/null >"$LOGS/boot.log" 2>&1 &
NSPAWN=$!
LEADER=
for ((i = 0; i < BOOT_TIMEOUT * 2; i++)); do
  kill -0 "$NSPAWN" 2>/dev/null || break
  # The root's PID 1 is systemd-nspawn's child once it has executed systemd.
  for pid in $(cat "/proc/$NSPAWN/task/$NSPAWN/children" 2>/dev/null || true); do
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == systemd ]] && LEADER=$pid
  done
  [[ -n $LEADER ]] && break
  sleep 0.5
done
[[ -n $LEADER ]] || { tail -n 20 "$LOGS/boot.log" >&2; die "systemd-nspawn did not start the root (log: $LOGS/boot.log)"; }
# inside COMMAND...: runs COMMAND in the booted root's namespaces.
inside() { nsenter -t "$LEADER" -a -- "${ROOT_ENV[@]}" "$@"; }
state=
for ((i = 0; i < BOOT_TIMEOUT * 2; i++)); do
  state=$(inside systemctl is-system-running 2>/dev/null || true)
  [[ $state == running || $state == degraded ]] && break
  kill -0 "$NSPAWN" 2>/dev/null || break
  sleep 0.5
done
check_eq "PID 1 in the root is systemd" systemd "$(inside cat /proc/1/comm 2>&1)"
if [[ $state == running ]]; then
  ok "booted: systemctl is-system-running: running"
else
  bad "booted: systemctl is-system-running: '$state'; failed units: $(inside systemctl --failed --plain --no-legend 2>&1 | tr '\n' ' ')"
fi
[[ $state == running || $state == degraded ]] || die "the root did not boot (log: $LOGS/boot.log)"

echo "==> forkpoold under systemd"
check_eq "units known to systemd, disabled after the install" "loaded disabled" \
  "$(inside systemctl show -P LoadState forkpoold.service) $(inside systemctl show -P UnitFileState forkpoold.service)"
for ((i = 0; i < 120; i++)); do
  inside pg_isready -q -h /run/postgresql && break
  sleep 0.5
done
check "PostgreSQL is up in the root" inside pg_isready -q -h /run/postgresql
inside runuser -u postgres -- psql -q -c 'CREATE ROLE forkpool LOGIN' >>"$LOGS/psql.log" 2>&1 || true
inside runuser -u postgres -- createdb -O forkpool fpdb >>"$LOGS/psql.log" 2>&1 || true

check "systemctl enable --now forkpoold.socket forkpoold.service" \
  inside systemctl enable --now forkpoold.socket forkpoold.service
check_eq "systemctl is-active forkpoold.socket forkpoold.service" "active active" \
  "$(inside systemctl is-active forkpoold.socket forkpoold.service | tr '\n' ' ' | sed 's/ *$//')"
pid=$(inside systemctl show -P MainPID forkpoold.service)
check_eq "forkpoold runs as forkpool:forkpool" "forkpool:forkpool" \
  "$(inside stat -c '%U:%G' "/proc/$pid" 2>&1)"
check_eq "control socket: forkpool:forkpool 660" "forkpool:forkpool 660" \
  "$(inside stat -c '%U:%G %a' /run/forkpool/forkpool.sock 2>&1)"

# lease NAME: a lease through the drop-in, as the worker's user "app" (who
# could not log in to the database itself: peer authentication, no role);
# BACKEND is then the session's backend pid.
BACKEND=
lease() {
  local out
  out=$(inside runuser -u app -- env LD_LIBRARY_PATH="${DROPIN%/libpq.so.5}" \
          psql "host=/run/forkpool dbname=main" -XAtc \
          "SELECT current_user || ' ' || current_database() || ' ' || pg_backend_pid()" 2>&1 || true)
  if [[ $out =~ ^forkpool\ fpdb\ ([0-9]+)$ ]]; then
    BACKEND=${BASH_REMATCH[1]}
    ok "$1: psql through the drop-in leased the pool's connection ($out)"
  else
    BACKEND=
    bad "$1: psql through the drop-in: $out"
  fi
}
lease "lease"
first_backend=$BACKEND
if out=$(inside forkpoolctl status 2>&1) && grep -q main <<<"$out"; then
  ok "forkpoolctl status (pool main)"
  echo "$out"
else
  bad "forkpoolctl status: $out"
fi
out=$(inside runuser -u app -- psql "host=/run/postgresql dbname=fpdb" -XAtc 'SELECT 1' 2>&1 || true)
check "the worker's user cannot log in without the pool" test "$out" != 1

check "systemctl restart forkpoold.service" inside systemctl restart forkpoold.service
check_eq "systemctl is-active forkpoold.service (after the restart)" active \
  "$(inside systemctl is-active forkpoold.service)"
lease "lease after the restart"
check_eq "the same session after the restart (systemd's fd store kept it)" "$first_backend" "$BACKEND"

# A reload (SIGHUP through ExecReload=) with a new pool_size.
sed -i 's/^pool_size = 2$/pool_size = 3/' "$ROOT/etc/forkpool/forkpool.conf"
check "systemctl reload forkpoold.service" inside systemctl reload forkpoold.service
check "forkpoolctl status: pool_size 3 after the reload" \
  grep -q 'Pool size: 3 ' <<<"$(inside forkpoolctl status 2>&1)"

# stopped SUFFIX: the service's end was clean; the socket stays.
stopped() {
  check_eq "stopped cleanly$1 (ActiveState Result ExecMainCode ExecMainStatus)" \
    "inactive success 1 0" "$(inside systemctl show -P ActiveState forkpoold.service) $(
      inside systemctl show -P Result forkpoold.service) $(
      inside systemctl show -P ExecMainCode forkpoold.service) $(
      inside systemctl show -P ExecMainStatus forkpoold.service)"
  check_eq "the socket stays while the service is stopped$1" active \
    "$(inside systemctl is-active forkpoold.socket)"
}
check "systemctl stop forkpoold.service" inside systemctl stop forkpoold.service
stopped ""
# A worker connecting now starts forkpoold again through the socket.
lease "lease while stopped (socket activation)"
check_eq "systemctl is-active forkpoold.service (started by the socket)" active \
  "$(inside systemctl is-active forkpoold.service)"
check "systemctl stop forkpoold.service (again)" inside systemctl stop forkpoold.service
stopped " (again)"
inside journalctl --no-pager -o short-monotonic -u forkpoold.service -u forkpoold.socket \
  >"$LOGS/journal.log" 2>&1 || true
if grep -Eiq 'error|fatal|assert' "$LOGS/journal.log"; then
  bad "the journal of forkpoold holds errors: $(grep -Ei 'error|fatal|assert' "$LOGS/journal.log" | head -n 3 | tr '\n' ' ')"
else
  ok "the journal of forkpoold holds no error ($(grep -c . "$LOGS/journal.log") lines)"
fi
starts=$(grep -c 'forkpoold\[[0-9]*\]: listening on' "$LOGS/journal.log" || true)
activated=$(grep -c 'forkpoold\[[0-9]*\]: listening on .* (socket activation)' "$LOGS/journal.log" || true)
check_eq "every start of forkpoold took the socket unit's socket (of $starts)" "$starts" "$activated"

echo "==> apt-get purge forkpool"
if inside apt-get -q purge -y forkpool >"$LOGS/purge.log" 2>&1; then
  ok "apt-get purge -y forkpool"
else
  bad "apt-get purge -y forkpool: $(tail -n 3 "$LOGS/purge.log" | tr '\n' ' ')"
fi
check_eq "purged: dpkg no longer knows forkpool" "" \
  "$(inside dpkg-query -W -f '${Status}' forkpool 2>/dev/null || true)"
check_eq "purged: the units are gone from systemd" "not-found inactive" \
  "$(inside systemctl show -P LoadState forkpoold.service) $(inside systemctl show -P ActiveState forkpoold.socket)"
for f in /usr/sbin/forkpoold /usr/bin/forkpoolctl /lib/systemd/system/forkpoold.service \
         "$DROPIN" "$PC"; do
  check "purged: $f" test ! -e "$ROOT$f"
done
check "the user forkpool stays (its files may be elsewhere)" inside getent passwd forkpool >/dev/null

echo "==> powering the root off"
stop_root
if [[ $STATUS -eq 0 ]]; then
  echo "$PROG: PASS: the .deb installs on Debian $RELEASE, creates its user, runs under systemd and purges"
else
  echo "$PROG: FAIL: ${#FAILED[@]} checks failed: ${FAILED[*]}" >&2
fi
exit "$STATUS"
