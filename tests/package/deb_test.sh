#!/usr/bin/env bash
# tests/package/deb_test.sh — the Debian package that cpack makes.
#
#   deb_test.sh BUILD_DIR WORK_DIR
#
# Runs cpack -G DEB for BUILD_DIR into WORK_DIR and checks the .deb with
# dpkg-deb: every file a host and a developer need is in it (at the install
# directories the tree was configured with: FP_PREFIX, FP_SBINDIR, … from the
# environment, as for install_test.sh), its Depends were filled by
# dpkg-shlibdeps and name the tools the postinst runs, and its maintainer
# scripts and ldconfig trigger are there.
# Nothing is installed.
set -euo pipefail

if [[ $# -ne 2 ]]; then
  echo "usage: $0 BUILD_DIR WORK_DIR" >&2
  exit 2
fi
build=$1 work=$2
status=0

rm -rf -- "$work"
mkdir -p "$work"
if ! cpack -G DEB --config "$build/CPackConfig.cmake" -B "$work" >"$work/cpack.log" 2>&1; then
  cat "$work/cpack.log" >&2
  exit 1
fi
debs=("$work"/*.deb)
if [[ ${#debs[@]} -ne 1 || ! -f ${debs[0]} ]]; then
  echo "deb: cpack made no single .deb in $work" >&2
  exit 1
fi
deb=${debs[0]}

contents=$(dpkg-deb -c "$deb" | awk '{ print $6 }' | sed 's|^\./|/|; s|/$||')
lib=$FP_PREFIX/$FP_LIBDIR inc=$FP_PREFIX/$FP_INCLUDEDIR man=$FP_PREFIX/$FP_MANDIR
for f in "$FP_PREFIX/$FP_SBINDIR/forkpoold" "$FP_PREFIX/$FP_BINDIR/forkpoolctl" \
         "$lib/libforkpool.so.$FP_VERSION" "$lib/libforkpool.so.$FP_SOVERSION" \
         "$lib/libforkpool.so" "$inc/forkpool.h" "$inc/forkpool_version.h" \
         "$lib/pkgconfig/forkpool.pc" "$lib/cmake/forkpool/forkpoolConfig.cmake" \
         "$man/man8/forkpoold.8" "$man/man1/forkpoolctl.1" "$man/man5/forkpool.conf.5" \
         "$man/man3/libforkpool.3" "$FP_PREFIX/$FP_DOCDIR/forkpool.conf.example"; do
  grep -qx -- "$f" <<<"$contents" || { echo "deb: $f is missing" >&2; status=1; }
done
for f in forkpoold.service forkpoold.socket; do
  grep -q -- "/systemd/system/$f\$" <<<"$contents" ||
    { echo "deb: the unit $f is missing" >&2; status=1; }
done
for d in sysusers.d tmpfiles.d; do
  grep -q -- "/$d/forkpool.conf\$" <<<"$contents" ||
    { echo "deb: $d/forkpool.conf is missing" >&2; status=1; }
done
# Nothing outside the prefix but systemd's directories; nothing under /etc.
if grep -v -e "^$FP_PREFIX\(/\|\$\)" -e '^/lib\(/systemd\(/system\(/.*\)\?\)\?\)\?$' -e '^$' \
     <<<"$contents" | grep -q .; then
  echo "deb: files outside $FP_PREFIX:" >&2
  grep -v -e "^$FP_PREFIX\(/\|\$\)" -e '^/lib\(/systemd\(/system\(/.*\)\?\)\?\)\?$' -e '^$' \
    <<<"$contents" >&2
  status=1
fi

depends=$(dpkg-deb -f "$deb" Depends)
for p in libc6 libpq5 libmariadb3 libsystemd0; do
  grep -q "\b$p\b" <<<"$depends" ||
    { echo "deb: Depends ($depends) lacks $p (dpkg-shlibdeps)" >&2; status=1; }
done
# The tools the postinst runs (systemd's, or the standalone ones).
for p in 'systemd | systemd-sysusers' 'systemd | systemd-tmpfiles'; do
  grep -qF -- "$p" <<<"$depends" ||
    { echo "deb: Depends ($depends) lacks $p (the postinst runs it)" >&2; status=1; }
done
mkdir -p "$work/control"
dpkg-deb -e "$deb" "$work/control"
for f in postinst prerm postrm shlibs triggers; do
  [[ -e $work/control/$f ]] || { echo "deb: no $f in the control archive" >&2; status=1; }
done
grep -q systemd-sysusers "$work/control/postinst" ||
  { echo "deb: postinst does not run systemd-sysusers" >&2; status=1; }

if [[ $status -eq 0 ]]; then
  echo "deb: $(basename "$deb"), $(grep -c . <<<"$contents") entries; Depends: $depends"
fi
exit "$status"
