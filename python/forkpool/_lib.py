# SPDX-License-Identifier: MIT
"""ctypes bindings of libforkpool (include/forkpool.h).

ctypes is in the standard library: the package needs no compiler, no build
step and no third-party module, so it installs offline from the source tree
and works with a distribution's own Python. The calls it makes are few and
cheap (an acquire and a release per checkout), so the ctypes overhead, a
few microseconds per call, does not matter next to a round trip.
"""
import ctypes
import ctypes.util
import errno
import os
import threading

_LIB_NAMES = ("libforkpool.so.0",)


class PoolStats(ctypes.Structure):
    """struct forkpool_pool_stats, with overflow and poolclass."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("pool_size", ctypes.c_int),
        ("max_overflow", ctypes.c_int),
        ("checked_out", ctypes.c_int),
        ("idle", ctypes.c_int),
        ("waiting", ctypes.c_int),
        ("oldest_wait_s", ctypes.c_double),
        ("paused", ctypes.c_int),
        ("overflow", ctypes.c_int),
        ("poolclass", ctypes.c_char * 16),
    ]


class MySQLSession(ctypes.Structure):
    """struct forkpool_mysql_session, first version."""

    _fields_ = [
        ("struct_size", ctypes.c_size_t),
        ("thread_id", ctypes.c_uint),
        ("protocol_version", ctypes.c_uint),
        ("server_capabilities", ctypes.c_uint),
        ("server_ext_capabilities", ctypes.c_uint),
        ("client_flag", ctypes.c_uint),
        ("client_ext_flag", ctypes.c_uint),
        ("server_language", ctypes.c_uint),
        ("server_status", ctypes.c_uint),
        ("charset_nr", ctypes.c_uint),
        ("server_version", ctypes.c_char * 64),
        ("charset", ctypes.c_char * 32),
        ("user", ctypes.c_char * 256),
        ("db", ctypes.c_char * 256),
        ("scramble", ctypes.c_ubyte * 20),
    ]


_lib = None
_lib_lock = threading.Lock()


def _load():
    """Loads libforkpool: $FORKPOOL_LIBRARY (a path), else the system's libforkpool.so.0,
    else the one of the installation that installed this package."""
    path = os.environ.get("FORKPOOL_LIBRARY")
    names = (path,) if path else _LIB_NAMES
    last = None
    for name in names:
        try:
            return ctypes.CDLL(name, use_errno=True)
        except OSError as e:
            last = e
    try:  # installed by cmake: the library's own directory
        from . import _config

        return ctypes.CDLL(os.path.join(_config.LIBDIR, _LIB_NAMES[0]), use_errno=True)
    except (ImportError, OSError):
        pass
    found = ctypes.util.find_library("forkpool")
    if found and not path:
        return ctypes.CDLL(found, use_errno=True)
    raise OSError("forkpool: cannot load libforkpool (%s); install libforkpool or set "
                  "FORKPOOL_LIBRARY to its path" % last)


def lib():
    """The loaded library, with its prototypes declared."""
    global _lib
    if _lib is not None:
        return _lib
    with _lib_lock:
        if _lib is not None:
            return _lib
        L = _load()
        vp, ip, cp = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
        protos = {
            "forkpool_version": (cp, []),
            "forkpool_open": (ip, [cp, ctypes.POINTER(vp)]),
            "forkpool_close": (None, [vp]),
            "forkpool_acquire_labeled": (ip, [vp, cp, ip, cp, ctypes.POINTER(vp)]),
            "forkpool_last_error": (cp, []),
            "forkpool_lease_pg": (vp, [vp]),
            "forkpool_lease_fd": (ip, [vp]),
            "forkpool_lease_backend_pid": (ip, [vp]),
            "forkpool_lease_mysql_session": (ip, [vp, ctypes.POINTER(MySQLSession)]),
            "forkpool_lease_mysql_report": (ip, [vp, ctypes.c_uint, cp, cp]),
            "forkpool_release": (ip, [vp]),
            "forkpool_invalidate": (ip, [vp]),
            "forkpool_soft_invalidate": (ip, [vp]),
            "forkpool_cancel": (ip, [vp]),
            "forkpool_strerror": (cp, [ip]),
            "forkpool_pool_state": (ip, [vp, cp, ctypes.POINTER(PoolStats)]),
        }
        for name, (res, args) in protos.items():
            f = getattr(L, name)
            f.restype = res
            f.argtypes = args
        _lib = L
        return L


def strerror(r):
    return lib().forkpool_strerror(r).decode("utf-8", "replace")


def last_error():
    return lib().forkpool_last_error().decode("utf-8", "replace")


def errname(r):
    return errno.errorcode.get(-r, str(r))
