#!/usr/bin/env bash
# shellcheck disable=SC2317  # trap handlers
# debian-lib.sh — what debian-root.sh and tests/package/deb_install_test.sh
# share: a minimal Debian root made with debootstrap, kept from starting
# services, and mounts into it that are undone when the script ends, also on a
# signal. Sourced, never run; the sourcing script sets PROG (its name) and
# then calls debian_traps once.
#
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian).

MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

die() { echo "$PROG: error: $*" >&2; exit 1; }

# The repository this file belongs to.
REPO=$(cd "$(dirname "$(realpath "${BASH_SOURCE[0]}")")/.." && pwd -P)

# debian_abs_dir DIR: creates DIR if needed and prints its physical path; DIR
# must be neither / nor inside the repository.
debian_abs_dir() {
  local dir
  mkdir -p "$1"
  dir=$(cd "$1" && pwd -P)
  [[ $dir != / ]] || die "$1 must not be /"
  case $dir/ in "$REPO"/*) die "$1 must be outside the repository" ;; esac
  printf '%s\n' "$dir"
}

# apt_install PACKAGES...: installs what is missing on this machine.
apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get -q -o DPkg::Lock::Timeout=600 install -y \
    --no-install-recommends "$@" </dev/null || die "could not install $*"
}

# debian_root_make RELEASE ROOT: makes a minimal Debian RELEASE root in ROOT
# with debootstrap (installed first if missing) unless ROOT holds a root
# already; dies if ROOT's root is of another release.
debian_root_make() {
  local release=$1 root=$2 codename
  if [[ ! -f $root/etc/os-release ]]; then
    command -v debootstrap >/dev/null 2>&1 || { echo "==> installing debootstrap"; apt_install debootstrap; }
    echo "==> debootstrap $release into $root"
    debootstrap --variant=minbase "$release" "$root" "$MIRROR" ||
      die "debootstrap $release failed (log: $root/debootstrap/debootstrap.log)"
  fi
  codename=$(sed -n 's/^VERSION_CODENAME=//p' "$root/etc/os-release")
  [[ $codename == "$release" ]] || die "$root holds Debian ${codename:-?}, not $release"
}

# debian_root_no_services ROOT: package scripts run in ROOT must not start
# services (nor take the host's ports); gives ROOT the host's resolver.
debian_root_no_services() {
  printf '#!/bin/sh\nexit 101\n' >"$1/usr/sbin/policy-rc.d"
  chmod 0755 "$1/usr/sbin/policy-rc.d"
  cp -L /etc/resolv.conf "$1/etc/resolv.conf" 2>/dev/null || true
}

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

# mount_at ROOT TARGET MOUNT-ARGS...: mounts at ROOT/TARGET; dies if
# something is mounted there already.
mount_at() {
  local target=$1$2
  shift 2
  mkdir -p "$target"
  mountpoint -q "$target" && die "$target is already mounted (another run in this root?)"
  mount "$@" "$target" || die "mount $* $target failed"
  MOUNTED+=("$target")
}

# mount_system ROOT: /proc, /sys, /dev, /dev/pts and a fresh /dev/shm (the
# host's POSIX shared memory stays apart), for commands run with chroot.
mount_system() {
  mount_at "$1" /proc -t proc proc
  mount_at "$1" /sys -t sysfs sysfs
  mount_at "$1" /dev --bind /dev
  mount_at "$1" /dev/pts --bind /dev/pts
  mount_at "$1" /dev/shm -t tmpfs -o mode=1777,nosuid,nodev tmpfs
}

# ---------------------------------------------------------------- signals
# CHILD: the pid of a background job to pass a signal on to. EXIT_HOOK: a
# command run at exit before the mounts are undone.
CHILD=
EXIT_HOOK=
debian_on_exit() {
  [[ -z $EXIT_HOOK ]] || $EXIT_HOOK
  unmount_all
}
debian_on_signal() {
  trap '' INT TERM HUP
  echo "$PROG: interrupted (SIG$1), cleaning up" >&2
  [[ -n $CHILD ]] && kill -"$1" "$CHILD" 2>/dev/null && wait "$CHILD" 2>/dev/null
  exit "$2"
}
debian_traps() {
  trap debian_on_exit EXIT
  trap 'debian_on_signal INT 130' INT
  trap 'debian_on_signal TERM 143' TERM
  trap 'debian_on_signal HUP 129' HUP
}

# The clean environment of commands run in a root with chroot:
#   chroot ROOT "${ROOT_ENV[@]}" [NAME=VALUE...] COMMAND...
ROOT_ENV=(/usr/bin/env -i HOME=/root LANG=C.UTF-8 TERM=dumb
  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  DEBIAN_FRONTEND=noninteractive)

# in_root ROOT COMMAND...: runs COMMAND in ROOT with chroot, as root, in
# ROOT_ENV.
in_root() {
  local root=$1
  shift
  chroot "$root" "${ROOT_ENV[@]}" "$@"
}
