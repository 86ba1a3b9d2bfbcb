#!/usr/bin/env bash
# debian-root.sh — run forkpool's test suite in a Debian root of another
# release (e.g. Debian 13 "trixie" on a Debian 12 host), the way a fresh
# machine of that release would run it.
#
#   debian-root.sh RELEASE DIR [tests/run.sh OPTIONS...]
#
# 1. Makes a minimal Debian RELEASE root in DIR with debootstrap if DIR holds
#    none yet (debootstrap is installed first if it is missing). A DIR that
#    already holds a root is reused as it is (its packages stay installed, so
#    later runs are faster); it must be of RELEASE.
# 2. Mounts /proc, /sys, /dev, /dev/pts, a fresh /dev/shm (the host's POSIX
#    shared memory stays apart) and the repository (read-write, at
#    /src/forkpool) into DIR; stops the root's packages from starting
#    services (usr/sbin/policy-rc.d).
# 3. Runs ./tests/run.sh OPTIONS... in the root, as root, with a build
#    directory inside the root (/var/tmp/forkpool-build, FORKPOOL_BUILD_DIR)
#    and a clean environment. run.sh installs the packages of that release.
# 4. Unmounts everything it mounted when it ends, also on a signal.
#
# Needs root (debootstrap, mount, chroot). Exits with tests/run.sh's status.
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian).
# Not part of tests/run.sh: a run takes as long as the whole suite plus the
# package installation.
set -euo pipefail

PROG=debian-root.sh
# shellcheck source=contrib/debian-lib.sh disable=SC1091
source "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/debian-lib.sh"

[[ $# -ge 2 ]] || { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
RELEASE=$1
ROOT=$2
shift 2
[[ $RELEASE =~ ^[a-z]+$ ]] || die "RELEASE must be a Debian code name (bookworm, trixie, ...): $RELEASE"
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, mount, chroot)"
ROOT=$(debian_abs_dir "$ROOT")

debian_root_make "$RELEASE" "$ROOT"
debian_root_no_services "$ROOT"

debian_traps
mount_system "$ROOT"
mount_at "$ROOT" /src/forkpool --bind "$REPO"

# ---------------------------------------------------------------- the run
echo "==> tests/run.sh $* in Debian $RELEASE ($ROOT)"
rc=0
(
  trap - INT TERM HUP
  exec chroot "$ROOT" "${ROOT_ENV[@]}" FORKPOOL_BUILD_DIR=/var/tmp/forkpool-build \
    ${FORKPOOL_FUZZ_SECONDS:+FORKPOOL_FUZZ_SECONDS=$FORKPOOL_FUZZ_SECONDS} \
    /bin/bash -c 'cd /src/forkpool && exec ./tests/run.sh "$@"' run.sh "$@"
) &
CHILD=$!
wait "$CHILD" || rc=$?
CHILD=
exit "$rc"
