# SPDX-License-Identifier: MIT
"""forkpool for Python: real DBAPI connections on sessions leased from forkpoold.

    import forkpool
    conn = forkpool.connect("main", driver="pymysql")   # a real pymysql Connection
    ...
    conn.close()                                        # gives the lease back

Drivers: "psycopg" (psycopg 3), "pymysql", "mysqldb" (mysqlclient) and
"psycopg2" (only through the libpq drop-in). forkpool.sqlalchemy.ForkPool is
SQLAlchemy's pool API on top of it.

forkpoold is found like libforkpool finds it: the socket argument, else
$FORKPOOL_SOCKET, else /run/forkpool/forkpool.sock.
"""
import ctypes
import errno
import os
import threading

from . import _lib

__all__ = ["connect", "Lease", "acquire", "pool_state", "PoolState", "Error",
           "PoolTimeout", "DEFAULT_SOCKET", "DRIVERS"]

DEFAULT_SOCKET = "/run/forkpool/forkpool.sock"
DRIVERS = ("psycopg", "pymysql", "mysqldb", "psycopg2")


class Error(Exception):
    """A forkpool failure: errno is the positive errno, text forkpoold's or the library's."""

    def __init__(self, message, errno_=None):
        super().__init__(message)
        self.errno = errno_


class PoolTimeout(Error):
    """No connection became free within the timeout (forkpool's -ETIMEDOUT)."""


def _socket_path(socket=None):
    return socket or os.environ.get("FORKPOOL_SOCKET") or DEFAULT_SOCKET


# One control connection per supervisor socket, shared by the process's threads.
# libforkpool itself gives a forked child its own control connection.
_handles = {}
_handles_lock = threading.Lock()


def _handle(socket=None):
    path = _socket_path(socket)
    with _handles_lock:
        h = _handles.get(path)
        if h is not None:
            return h
        L = _lib.lib()
        p = ctypes.c_void_p()
        r = L.forkpool_open(path.encode(), ctypes.byref(p))
        if r < 0:
            raise Error("forkpool: cannot reach forkpoold at %s: %s"
                        % (path, _lib.strerror(r)), -r)
        _handles[path] = p
        return p


def _forget_handle(socket=None):
    """Closes this process's control connection to that supervisor (dispose)."""
    path = _socket_path(socket)
    with _handles_lock:
        h = _handles.pop(path, None)
    if h is not None:
        _lib.lib().forkpool_close(h)


def _error(r, what):
    text = _lib.last_error() or _lib.strerror(r)
    cls = PoolTimeout if r == -errno.ETIMEDOUT else Error
    return cls("forkpool: %s: %s" % (what, text), -r)


class PoolState:
    """A pool's load as the supervisor's segment shows it (forkpool_pool_state())."""

    __slots__ = ("pool_size", "max_overflow", "checked_out", "idle", "waiting",
                 "oldest_wait_s", "paused", "overflow", "poolclass")

    def status(self):
        """SQLAlchemy's status() line for the pool's class, as forkpoolctl prints it."""
        c = self.poolclass
        if c == "null":
            return "NullPool"
        if c == "static":
            return "StaticPool"
        if c == "assertion":
            return "AssertionPool"
        if c == "process":
            return "ProcessPool size: %d" % self.checked_out
        return ("Pool size: %d  Connections in pool: %d Current Overflow: %d "
                "Current Checked out connections: %d"
                % (self.pool_size, self.idle, self.overflow, self.checked_out))

    def __repr__(self):
        return "<forkpool.PoolState %s>" % self.status()


def pool_state(pool, socket=None):
    """The pool's PoolState, read from the segment (no round trip)."""
    st = _lib.PoolStats()
    st.struct_size = ctypes.sizeof(st)
    h = _handle(socket)
    r = -errno.EAGAIN
    for _ in range(100):
        r = _lib.lib().forkpool_pool_state(h, pool.encode(), ctypes.byref(st))
        if r != -errno.EAGAIN:
            break
    if r < 0:
        raise Error("forkpool: state of pool %r: %s" % (pool, _lib.strerror(r)), -r)
    s = PoolState()
    for f in PoolState.__slots__:
        if f == "poolclass":
            continue
        setattr(s, f, getattr(st, f))
    # The two later fields, if this library is new enough to fill them.
    full = st.struct_size >= ctypes.sizeof(st)
    s.poolclass = st.poolclass.decode() if full else "queue"
    if not full:
        s.overflow = st.checked_out + st.idle - st.pool_size if st.pool_size else 0
    return s


class Lease:
    """One leased connection. Belongs to the process that acquired it."""

    def __init__(self, ptr, pool, socket):
        self._ptr = ptr
        self.pool = pool
        self.socket = socket
        self.pid = os.getpid()
        self._lock = threading.Lock()

    @property
    def alive(self):
        return self._ptr is not None and self.pid == os.getpid()

    def _p(self):
        if self._ptr is None:
            raise Error("forkpool: the lease was given back", errno.EBADF)
        if self.pid != os.getpid():
            raise Error("forkpool: the lease belongs to process %d" % self.pid, errno.ECHILD)
        return self._ptr

    def fd(self):
        r = _lib.lib().forkpool_lease_fd(self._p())
        if r < 0:
            raise _error(r, "lease fd")
        return r

    def backend_pid(self):
        r = _lib.lib().forkpool_lease_backend_pid(self._p())
        if r < 0:
            raise _error(r, "lease backend pid")
        return r

    def pgconn_ptr(self):
        p = _lib.lib().forkpool_lease_pg(self._p())
        if not p:
            e = ctypes.get_errno()
            raise Error("forkpool: adopting the PostgreSQL session failed: %s"
                        % (_lib.last_error() or os.strerror(e)), e)
        return p

    def mysql_session(self):
        s = _lib.MySQLSession()
        s.struct_size = ctypes.sizeof(s)
        r = _lib.lib().forkpool_lease_mysql_session(self._p(), ctypes.byref(s))
        if r < 0:
            raise _error(r, "MySQL session of the lease")
        return s

    def mysql_report(self, server_status, db=None, charset=None):
        r = _lib.lib().forkpool_lease_mysql_report(
            self._p(), server_status, db.encode() if db is not None else None,
            charset.encode() if charset is not None else None)
        if r < 0:
            raise _error(r, "MySQL session report")

    def soft_invalidate(self):
        if not self.alive:
            return
        _lib.lib().forkpool_soft_invalidate(self._ptr)

    def cancel(self):
        r = _lib.lib().forkpool_cancel(self._p())
        if r < 0:
            raise _error(r, "cancel")

    def _give_back(self, fn):
        with self._lock:
            p, self._ptr = self._ptr, None
        if p is None:
            return
        if self.pid != os.getpid():
            # A forked child: the parent's lease is not ours; forget it (memory only).
            return
        fn(p)

    def release(self):
        """Gives the connection back to the pool (idempotent; in a child: nothing)."""
        self._give_back(_lib.lib().forkpool_release)

    def invalidate(self):
        """Gives it back to be closed instead of reused."""
        self._give_back(_lib.lib().forkpool_invalidate)


def acquire(pool, timeout=None, socket=None, label=None):
    """Leases a connection of pool; timeout in seconds (None: the pool's pool_timeout)."""
    h = _handle(socket)
    ms = -1 if timeout is None else max(0, int(round(timeout * 1000)))
    p = ctypes.c_void_p()
    r = _lib.lib().forkpool_acquire_labeled(
        h, pool.encode(), ms, label.encode()[:63] if label else None, ctypes.byref(p))
    if r < 0:
        raise _error(r, "acquire from pool %r" % pool)
    return Lease(p, pool, socket)


def connect(pool, driver, timeout=None, socket=None, label=None, **driver_kwargs):
    """A real DBAPI connection of driver on a session leased from pool.

    Closing it gives the lease back (a connection closed with a transaction
    open is rolled back by forkpoold). Errors are the driver's
    OperationalError (forkpool's PoolTimeout for -ETIMEDOUT as well, with
    SQLAlchemy's QueuePool text), so code that catches the driver's errors
    sees them.
    """
    from . import _drivers
    return _drivers.connect(pool, driver, timeout, socket, label, driver_kwargs)
