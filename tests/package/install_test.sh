#!/usr/bin/env bash
# tests/package/install_test.sh — the install tree, as a distribution
# package would lay it out, and a program built against it.
#
#   install_test.sh BUILD_DIR WORK_DIR
#
# Installs BUILD_DIR into WORK_DIR/root (DESTDIR), checks that every file a
# host and a developer need is where it belongs (programs, the library with
# its SONAME, headers, forkpool.pc, the CMake package, systemd units,
# sysusers.d and tmpfiles.d snippets, the documentation, the manual pages),
# then builds tests/package/consumer once with pkg-config and once with
# CMake's find_package(forkpool), and runs both against the installed
# library (LD_LIBRARY_PATH).
#
# The install directories come from the environment, as CMake configured
# them (tests/CMakeLists.txt): FP_PREFIX, and FP_BINDIR, FP_SBINDIR,
# FP_LIBDIR, FP_INCLUDEDIR, FP_MANDIR, FP_DOCDIR, FP_UNITDIR,
# FP_SYSUSERSDIR, FP_TMPFILESDIR (relative to FP_PREFIX unless absolute),
# FP_VERSION, FP_SOVERSION.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR WORK_DIR" >&2
  exit 2
fi
build=$1 work=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
root=$work/root
status=0

# dir NAME: the DESTDIR path of one install directory.
dir() {
  local d=${!1}
  if [[ $d == /* ]]; then echo "$root$d"; else echo "$root$FP_PREFIX/$d"; fi
}
expect() {
  if [[ ! -e $1 && ! -L $1 ]]; then
    echo "install: missing ${1#"$root"}" >&2
    status=1
  fi
}

rm -rf -- "$work"
mkdir -p "$work"
DESTDIR=$root cmake --install "$build" >"$work/install.log" ||
  { cat "$work/install.log" >&2; exit 1; }

bin=$(dir FP_BINDIR) sbin=$(dir FP_SBINDIR) lib=$(dir FP_LIBDIR) inc=$(dir FP_INCLUDEDIR)
man=$(dir FP_MANDIR) doc=$(dir FP_DOCDIR)
expect "$sbin/forkpoold"
expect "$bin/forkpoolctl"
expect "$lib/libforkpool.so.$FP_VERSION"
expect "$lib/libforkpool.so.$FP_SOVERSION"
expect "$lib/libforkpool.so"
expect "$inc/forkpool.h"
expect "$inc/forkpool_version.h"
expect "$lib/pkgconfig/forkpool.pc"
expect "$lib/cmake/forkpool/forkpoolConfig.cmake"
expect "$lib/cmake/forkpool/forkpoolConfigVersion.cmake"
expect "$lib/cmake/forkpool/forkpoolTargets.cmake"
expect "$(dir FP_UNITDIR)/forkpoold.service"
expect "$(dir FP_UNITDIR)/forkpoold.socket"
expect "$(dir FP_SYSUSERSDIR)/forkpool.conf"
expect "$(dir FP_TMPFILESDIR)/forkpool.conf"
expect "$doc/forkpool.conf.example"
expect "$doc/README.md"
# The libpq drop-in, in a directory of its own (LD_LIBRARY_PATH names it), and
# the examples that put it in front of libpq.
expect "$lib/forkpool/libpq.so.5"
for example in apache2-envvars php-fpm-forkpool.conf gunicorn-forkpool.conf; do
  expect "$doc/examples/dropin/$example"
done
if [[ $(readelf -d "$lib/forkpool/libpq.so.5" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p') != libpq.so.5 ]]; then
  echo "the drop-in's SONAME is not libpq.so.5" >&2
  status=1
fi
if ! grep -q "$FP_PREFIX/$FP_LIBDIR/forkpool" "$doc/examples/dropin/php-fpm-forkpool.conf"; then
  echo "the PHP-FPM example does not name the installed drop-in's directory" >&2
  status=1
fi
for page in man1/forkpoolctl.1 man5/forkpool.conf.5 man8/forkpoold.8 man3/libforkpool.3; do
  expect "$man/$page"
done
# Every exported function has its manual page (a link to libforkpool(3)).
for fn in $(nm -D --defined-only "$lib/libforkpool.so.$FP_SOVERSION" | awk '$2 == "T" { print $3 }' |
            cut -d@ -f1); do
  expect "$man/man3/$fn.3"
done

soname=$(readelf -d "$lib/libforkpool.so.$FP_VERSION" | sed -n 's/.*(SONAME).*\[\(.*\)\]/\1/p')
if [[ $soname != "libforkpool.so.$FP_SOVERSION" ]]; then
  echo "install: libforkpool's SONAME is '$soname', not libforkpool.so.$FP_SOVERSION" >&2
  status=1
fi
if [[ $(readlink "$lib/libforkpool.so.$FP_SOVERSION") != "libforkpool.so.$FP_VERSION" ]]; then
  echo "install: libforkpool.so.$FP_SOVERSION does not link to libforkpool.so.$FP_VERSION" >&2
  status=1
fi
if ! grep -q "^ExecStart=$FP_PREFIX/$FP_SBINDIR/forkpoold " "$(dir FP_UNITDIR)/forkpoold.service"
then
  echo "install: forkpoold.service does not start $FP_PREFIX/$FP_SBINDIR/forkpoold" >&2
  status=1
fi
if ! "$sbin/forkpoold" --version | grep -qx "forkpoold $FP_VERSION" ||
   ! "$bin/forkpoolctl" --version | grep -qx "forkpoolctl $FP_VERSION"; then
  echo "install: forkpoold or forkpoolctl --version is not $FP_VERSION" >&2
  status=1
fi
[[ $status -eq 0 ]] || exit 1

expected="forkpool $FP_VERSION"
check_run() {
  local what=$1 prog=$2 out
  if ! out=$(LD_LIBRARY_PATH=$lib "$prog"); then
    echo "$what: the consumer failed: $out" >&2
    return 1
  fi
  if [[ $(head -n 1 <<<"$out") != "$expected "* ||
        $(tail -n 1 <<<"$out") != "no connection became free within the timeout" ]]; then
    echo "$what: unexpected output: $out" >&2
    return 1
  fi
  echo "$what: $(tr '\n' ';' <<<"$out")"
}

# pkg-config, with the staged tree as the sysroot of forkpool.pc's paths: the
# library alone, and with libpq as a program that uses the PGconn of a lease.
flags=$(PKG_CONFIG_PATH=$lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$root \
        pkg-config --cflags --libs forkpool)
# shellcheck disable=SC2086  # $flags is a list of compiler arguments
cc -std=c11 -Wall -Wextra -pedantic -Werror -o "$work/consumer-pkgconfig" \
   "$here/consumer/consumer.c" $flags
check_run pkg-config "$work/consumer-pkgconfig" || status=1
libpq_flags=$(pkg-config --cflags --libs libpq)
# shellcheck disable=SC2086
cc -std=c11 -Wall -Wextra -pedantic -Werror -DWITH_LIBPQ -o "$work/consumer-libpq" \
   "$here/consumer/consumer.c" $flags $libpq_flags
check_run "pkg-config with libpq" "$work/consumer-libpq" || status=1

# CMake, through find_package(forkpool) and the imported target forkpool::forkpool.
if ! cmake -S "$here/consumer" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$root$FP_PREFIX" \
       >"$work/cmake.log" 2>&1 ||
   ! cmake --build "$work/cmake" >>"$work/cmake.log" 2>&1; then
  cat "$work/cmake.log" >&2
  exit 1
fi
check_run find_package "$work/cmake/consumer" || status=1
exit "$status"
