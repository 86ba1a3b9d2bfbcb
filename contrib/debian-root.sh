#!/usr/bin/env bash
# shellcheck disable=SC2317  # trap handlers
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
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() { echo "$PROG: error: $*" >&2; exit 1; }

[[ $# -ge 2 ]] || { sed -n '3,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0" >&2; exit 2; }
RELEASE=$1
ROOT=$2
shift 2
[[ $RELEASE =~ ^[a-z]+$ ]] || die "RELEASE must be a Debian code name (bookworm, trixie, ...): $RELEASE"
[[ $(id -u) -eq 0 ]] || die "needs root (debootstrap, mount, chroot)"
REPO=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/.." && pwd -P)

mkdir -p "$ROOT"
ROOT=$(cd "$ROOT" && pwd -P)
[[ $ROOT != / ]] || die "DIR must not be /"
case $ROOT/ in "$REPO"/*) die "DIR must be outside the repository" ;; esac

# ---------------------------------------------------------------- the root
if [[ ! -f $ROOT/etc/os-release ]]; then
  if ! command -v debootstrap >/dev/null 2>&1; then
    echo "==> installing debootstrap"
    DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y \
      --no-install-recommends debootstrap </dev/null || die "could not install debootstrap"
  fi
  echo "==> debootstrap $RELEASE into $ROOT"
  debootstrap --variant=minbase "$RELEASE" "$ROOT" "$MIRROR" ||
    die "debootstrap $RELEASE failed (log: $ROOT/debootstrap/debootstrap.log)"
fi
codename=$(sed -n 's/^VERSION_CODENAME=//p' "$ROOT/etc/os-release")
[[ $codename == "$RELEASE" ]] || die "$ROOT holds Debian ${codename:-?}, not $RELEASE"

# Package scripts must not start services in the root (nor on the host's ports).
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
chmod 0755 "$ROOT/usr/sbin/policy-rc.d"
cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf" 2>/dev/null || true

# ---------------------------------------------------------------- mounts
MOUNTED=() # in mount order; unmounted in reverse
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
    umount "${MOUNTED[i]}" 2>/dev/null || umount -l "${MOUNTED[i]}" ||
      echo "$PROG: warning: could not unmount ${MOUNTED[i]}" >&2
  done
  MOUNTED=()
}
CHILD=
on_signal() {
  trap '' INT TERM HUP
  echo "$PROG: interrupted (SIG$1), cleaning up" >&2
  [[ -n $CHILD ]] && kill -"$1" "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
  exit "$2"
}
trap unmount_all EXIT
trap 'on_signal INT 130' INT
trap 'on_signal TERM 143' TERM
trap 'on_signal HUP 129' HUP

# mount_at TARGET MOUNT-ARGS...: mounts unless TARGET is already a mount point.
mount_at() {
  local target=$ROOT$1
  shift
  mkdir -p "$target"
  mountpoint -q "$target" && die "$target is already mounted (another run in $ROOT?)"
  mount "$@" "$target" || die "mount $* $target failed"
  MOUNTED+=("$target")
}
mount_at /proc -t proc proc
mount_at /sys -t sysfs sysfs
mount_at /dev --bind /dev
mount_at /dev/pts --bind /dev/pts
mount_at /dev/shm -t tmpfs -o mode=1777,nosuid,nodev tmpfs
mount_at /src/forkpool --bind "$REPO"

# ---------------------------------------------------------------- the run
echo "==> tests/run.sh $* in Debian $RELEASE ($ROOT)"
rc=0
(
  trap - INT TERM HUP
  exec chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    FORKPOOL_BUILD_DIR=/var/tmp/forkpool-build \
    ${FORKPOOL_FUZZ_SECONDS:+FORKPOOL_FUZZ_SECONDS=$FORKPOOL_FUZZ_SECONDS} \
    /bin/bash -c 'cd /src/forkpool && exec ./tests/run.sh "$@"' run.sh "$@"
) &
CHILD=$!
wait "$CHILD" || rc=$?
CHILD=
exit "$rc"
