# SPDX-License-Identifier: MIT
"""DBAPI connections on leased sessions, one adapter per driver.

Every adapter obeys the lease's rules: the lease (libforkpool) owns the
session's socket and, for psycopg, the PGconn; closing the DBAPI connection
gives the lease back (forkpool_release) without a Terminate/COM_QUIT; a
connection whose socket failed is given back to be closed
(forkpool_invalidate); in a forked child, closing an inherited connection
frees only memory (libforkpool has already replaced the child's copies of
the leased sockets by dead ones, and this module does the same for the
descriptors it made itself).
"""
import ctypes
import errno
import os
import socket as socketmod
import tempfile
import threading
import weakref

from . import Error, PoolTimeout, _mysql, acquire


def _driver_error(mod_error, exc, errno_=None):
    """exc (a forkpool.Error) as the driver's OperationalError, forkpool.Error too."""
    cls = _error_classes.get(mod_error)
    if cls is None:
        cls = type("OperationalError", (mod_error, Error), {"__module__": "forkpool"})
        _error_classes[mod_error] = cls
    try:
        e = cls(str(exc))
    except TypeError:
        e = cls(2013, str(exc))
    e.errno = getattr(exc, "errno", errno_)
    e.forkpool_timeout = isinstance(exc, PoolTimeout)
    return e


_error_classes = {}


def _acquire_as(mod_error, pool, timeout, socket, label):
    try:
        return acquire(pool, timeout=timeout, socket=socket, label=label)
    except Error as exc:
        raise _driver_error(mod_error, exc) from None


def _dead_socket_over(fd):
    """Puts an unconnected socket at fd: nothing written there reaches anyone."""
    s = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
    try:
        os.dup2(s.fileno(), fd)
    finally:
        s.close()


# Descriptors this module dup'ed a leased socket onto (mysqlclient's): in a
# forked child they are replaced by dead sockets, as libforkpool does for its own.
_our_fds = set()
_our_fds_lock = threading.Lock()


def _after_fork_in_child():
    for fd in list(_our_fds):
        try:
            _dead_socket_over(fd)
        except OSError:
            pass
    _our_fds.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


# ---------------------------------------------------------------- psycopg 3

def _psycopg(pool, timeout, socket, label, kw):
    import psycopg
    from psycopg import pq

    if pq.__impl__ != "python":
        raise _driver_error(psycopg.OperationalError, Error(
            "forkpool: psycopg's %r libpq wrapper cannot wrap an existing PGconn; run with "
            "PSYCOPG_IMPL=python" % pq.__impl__, errno.EOPNOTSUPP))
    from psycopg.pq import _pq_ctypes

    autocommit = kw.pop("autocommit", False)
    prepare_threshold = kw.pop("prepare_threshold", 5)
    if kw:
        raise TypeError("forkpool.connect(driver='psycopg'): unexpected arguments %s; "
                        "connection options are the pool's (forkpoold's URL)" % sorted(kw))
    lease = _acquire_as(psycopg.OperationalError, pool, timeout, socket, label)
    try:
        ptr = lease.pgconn_ptr()
    except Error as exc:
        lease.invalidate()
        raise _driver_error(psycopg.OperationalError, exc) from None
    pgconn = pq.PGconn(ctypes.cast(ptr, _pq_ctypes.PGconn_ptr))
    conn = _PsycopgConnection(pgconn)
    conn._autocommit = bool(autocommit)
    conn.prepare_threshold = prepare_threshold
    conn._fp_attach(lease)
    return conn


def _psycopg_give_back(lease, pgconn):
    # The lease owns the PGconn: psycopg must never PQfinish it.
    bad = pgconn._pgconn_ptr is None or pgconn.status != 0  # CONNECTION_OK
    pgconn._pgconn_ptr = None
    if bad:
        lease.invalidate()
    else:
        lease.release()


def _psycopg_class():
    import psycopg

    class Connection(psycopg.Connection):
        """psycopg's Connection on a forkpool lease; close() gives the lease back."""

        def _fp_attach(self, lease):
            self.forkpool_lease = lease
            self._fp_final = weakref.finalize(self, _psycopg_give_back, lease, self.pgconn)

        def close(self):
            final = getattr(self, "_fp_final", None)
            if final is None or not final.alive:
                return
            self._closed = True
            final()

        def forkpool_invalidate(self):
            """Gives the session back to be closed, not reused."""
            final = getattr(self, "_fp_final", None)
            if final is not None and final.alive:
                final.detach()
                self._closed = True
                self.pgconn._pgconn_ptr = None
                self.forkpool_lease.invalidate()

    return Connection


class _Lazy:
    def __init__(self, make):
        self._make = make
        self._cls = None

    def __call__(self, *a, **kw):
        if self._cls is None:
            self._cls = self._make()
        return self._cls(*a, **kw)


_PsycopgConnection = _Lazy(_psycopg_class)


# ---------------------------------------------------------------- PyMySQL

def _recv_exact(sock, n):
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise _mysql.Refused("the client library hung up during the adoption")
        buf += chunk
    return buf


def _pymysql(pool, timeout, socket, label, kw):
    from pymysql import err as myerr

    autocommit = kw.pop("autocommit", False)
    client_flag = kw.pop("client_flag", 0)
    for k in ("host", "port", "unix_socket", "user", "password", "passwd", "database", "db",
              "ssl", "init_command", "sql_mode", "defer_connect"):
        if k in kw:
            raise TypeError("forkpool.connect(driver='pymysql'): %r is the pool's "
                            "(forkpoold's URL), not the worker's" % k)
    lease = _acquire_as(myerr.OperationalError, pool, timeout, socket, label)
    try:
        s = lease.mysql_session()
        charset = s.charset.decode()
        charset = _mysql.CHARSET_ALIASES.get(charset, charset)
        conn = _PyMySQLConnection(
            user=s.user.decode(), password="", database=s.db.decode() or None,
            charset=charset, autocommit=None, defer_connect=True,
            client_flag=_mysql.client_flag_for(s, client_flag),
            **kw)
        ours, theirs = socketmod.socketpair(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
        try:
            ours.settimeout(2.0)
            # PyMySQL reads the greeting, writes its response, then reads the verdict:
            # with both queued first, the handshake runs in this one thread. PyMySQL
            # >= 1.1 then sends SET NAMES for its charset, the session's: the OK
            # queued for it answers it (older versions leave it unread).
            ours.sendall(_mysql.greeting(s) + _mysql.ok(s) + _mysql.ok(s, seq=1))
            conn.connect(sock=theirs)
            seq, body = _mysql.read_packet(lambda n: _recv_exact(ours, n))
            _mysql.check_response(s, seq, body, "PyMySQL")
            _mysql.check_set_names(ours, charset, "PyMySQL")
        finally:
            ours.close()
        # Now the real socket goes under PyMySQL: the lease's own descriptor, which
        # libforkpool owns (and kills in a forked child); PyMySQL must never close it.
        conn._rfile = None
        theirs.close()
        real = socketmod.socket(fileno=lease.fd())
        conn._sock = real
        conn._rfile = real.makefile("rb")
        if not s.server_capabilities & _mysql.CLIENT_MYSQL:
            conn._fp_ext = s.client_ext_flag
        conn._fp_attach(lease, s)
        if autocommit is not None:
            conn.autocommit(autocommit)
    except _mysql.Refused as exc:
        lease.invalidate()
        raise _driver_error(myerr.OperationalError, Error("forkpool: " + str(exc),
                                                          errno.EPROTO)) from None
    except Error as exc:
        lease.invalidate()
        raise _driver_error(myerr.OperationalError, exc) from None
    except BaseException:
        lease.invalidate()
        raise
    return conn


def _pymysql_give_back(lease, state, invalidate):
    sock = state.get("sock")
    state["sock"] = None
    if sock is not None:
        if state.get("rfile") is not None:
            state["rfile"] = None
        sock.detach()  # the descriptor is the lease's
    if not lease.alive:
        lease._give_back(lambda p: None)
        return
    if invalidate:
        lease.invalidate()
        return
    try:
        lease.mysql_report(state["status"], None, state["charset"])
    except Error:
        lease.invalidate()
        return
    lease.release()


MARIADB_CLIENT_PROGRESS = 1 << 0
MARIADB_CLIENT_EXTENDED_METADATA = 1 << 3
ER_PROGRESS_REPORT = 0xFFFF


def _pymysql_class():
    import pymysql
    from pymysql import connections as pc
    from pymysql import err as myerr

    class ExtFieldDescriptorPacket(pc.FieldDescriptorPacket):
        """A column definition with MariaDB's extended metadata (which PyMySQL does not know).

        forkpoold's sessions are negotiated by Connector/C, with MariaDB's extended
        capabilities; with MARIADB_CLIENT_EXTENDED_METADATA the server adds one
        length-coded string (the extended type info) after org_name.
        """

        def _parse_field_descriptor(self, encoding):
            self.catalog = self.read_length_coded_string()
            self.db = self.read_length_coded_string()
            self.table_name = self.read_length_coded_string().decode(encoding)
            self.org_table = self.read_length_coded_string().decode(encoding)
            self.name = self.read_length_coded_string().decode(encoding)
            self.org_name = self.read_length_coded_string().decode(encoding)
            self.read_length_coded_string()  # extended type info
            (self.charsetnr, self.length, self.type_code, self.flags,
             self.scale) = self.read_struct("<xHIBHBxx")

    class Connection(pymysql.connections.Connection):
        """PyMySQL's Connection on a forkpool lease; close() gives the lease back."""

        _fp_ext = 0

        def _read_packet(self, packet_type=pc.MysqlPacket):
            if packet_type is pc.FieldDescriptorPacket and \
                    self._fp_ext & MARIADB_CLIENT_EXTENDED_METADATA:
                packet_type = ExtFieldDescriptorPacket
            while True:
                try:
                    return super()._read_packet(packet_type)
                except myerr.MySQLError as e:
                    # A progress report (the session has MARIADB_CLIENT_PROGRESS): skip it.
                    if self._fp_ext & MARIADB_CLIENT_PROGRESS and e.args and \
                            e.args[0] == ER_PROGRESS_REPORT:
                        continue
                    raise

        def _fp_attach(self, lease, session):
            self.forkpool_lease = lease
            self._fp_charset = self.charset
            self._fp_state = {"sock": self._sock, "rfile": self._rfile, "status": 0,
                              "charset": None}
            self._fp_final = weakref.finalize(self, _pymysql_give_back, lease,
                                              self._fp_state, True)

        def _fp_end(self, invalidate):
            final = getattr(self, "_fp_final", None)
            if final is None or not final.alive:
                return
            final.detach()
            st = self._fp_state
            busy = self._result is not None and getattr(self._result, "unbuffered_active", False)
            st["status"] = self.server_status
            if self.charset != self._fp_charset:
                st["charset"] = self.charset
            rfile, self._rfile = self._rfile, None
            self._sock = None
            self._closed = True
            if rfile is not None:
                rfile.close()
            _pymysql_give_back(self.forkpool_lease, st, invalidate or busy)

        def close(self):
            self._fp_end(False)

        def _force_close(self):
            # A read or write failed: the session is in an unknown state.
            self._fp_end(True)

        def forkpool_invalidate(self):
            self._fp_end(True)

        def ping(self, reconnect=False):
            # Never reconnect by itself: a new session is a new lease.
            return super().ping(reconnect=False)

        @property
        def open(self):
            return self._sock is not None

    return Connection


_PyMySQLConnection = _Lazy(_pymysql_class)


# ---------------------------------------------------------------- mysqlclient

def _socket_fds_peered_to(path):
    """This process's descriptors of Unix stream sockets connected to path."""
    found = []
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        try:
            if not os.readlink("/proc/self/fd/%d" % fd).startswith("socket:"):
                continue
            s = socketmod.socket(fileno=os.dup(fd))
        except OSError:
            continue
        try:
            if s.family == socketmod.AF_UNIX and s.getpeername() == path:
                found.append(fd)
        except OSError:
            pass
        finally:
            s.close()
    return found


def _fake_server(listener, s, result):
    """One handshake on listener, in a thread: mysqlclient's connect blocks."""
    try:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(2.0)
            conn.sendall(_mysql.greeting(s))
            seq, body = _mysql.read_packet(lambda n: _recv_exact(conn, n))
            try:
                _mysql.check_response(s, seq, body, "mysqlclient (Connector/C)")
            except _mysql.Refused as exc:
                conn.sendall(_mysql.refusal(str(exc)))
                result["refused"] = str(exc)
                return
            conn.sendall(_mysql.ok(s))
            # Keep our end open until the caller has put the real socket in place.
            result["ok"] = True
            result["done"].wait(5.0)
    except Exception as exc:  # reported to the caller
        result["error"] = exc


def _mysqldb(pool, timeout, socket, label, kw):
    import MySQLdb
    import MySQLdb.connections

    autocommit = kw.pop("autocommit", False)
    client_flag = kw.pop("client_flag", 0)
    for k in ("host", "port", "unix_socket", "user", "password", "passwd", "database", "db",
              "ssl", "init_command", "sql_mode", "named_pipe", "read_default_file",
              "read_default_group"):
        if k in kw:
            raise TypeError("forkpool.connect(driver='mysqldb'): %r is the pool's "
                            "(forkpoold's URL), not the worker's" % k)
    OperationalError = MySQLdb.OperationalError
    lease = _acquire_as(OperationalError, pool, timeout, socket, label)
    d = None
    try:
        s = lease.mysql_session()
        charset = s.charset.decode()
        charset = _mysql.CHARSET_ALIASES.get(charset, charset)
        # A private listener: a fresh 0700 directory, which no other uid can reach.
        d = tempfile.mkdtemp(prefix="forkpool-py-")
        path = os.path.join(d, "my.sock")
        listener = socketmod.socket(socketmod.AF_UNIX, socketmod.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        listener.settimeout(2.0)
        result = {"done": threading.Event()}
        t = threading.Thread(target=_fake_server, args=(listener, s, result), daemon=True)
        t.start()
        try:
            conn = _MySQLdbConnection(
                unix_socket=path, user=s.user.decode(), passwd="", db=s.db.decode() or "",
                charset=charset, autocommit=None, connect_timeout=2,
                client_flag=_mysql.client_flag_for(
                    s, client_flag), **kw)
        except MySQLdb.Error:
            result["done"].set()
            t.join(3.0)
            if "refused" in result:
                raise _mysql.Refused(result["refused"]) from None
            raise
        try:
            fd = conn.fileno()
            if fd < 0 or fd not in _socket_fds_peered_to(path):
                fds = _socket_fds_peered_to(path)
                if len(fds) != 1:
                    raise Error("forkpool: cannot find mysqlclient's socket", errno.EPROTO)
                fd = fds[0]
            os.dup2(lease.fd(), fd)
            with _our_fds_lock:
                _our_fds.add(fd)
        except BaseException:
            conn._fp_fd = None
            _MySQLdbConnection.close_raw(conn)
            raise
        finally:
            result["done"].set()
            t.join(3.0)
            listener.close()
        conn._fp_attach(lease, fd)
        if autocommit is not None:
            conn.autocommit(autocommit)
    except _mysql.Refused as exc:
        lease.invalidate()
        raise _driver_error(OperationalError, Error("forkpool: " + str(exc),
                                                    errno.EPROTO)) from None
    except Error as exc:
        lease.invalidate()
        raise _driver_error(OperationalError, exc) from None
    except BaseException:
        lease.invalidate()
        raise
    finally:
        if d is not None:
            try:
                os.unlink(os.path.join(d, "my.sock"))
            except OSError:
                pass
            os.rmdir(d)
    return conn


def _mysqldb_give_back(lease, fd, invalidate):
    # mysqlclient's descriptor first: from here nothing of its reaches the server.
    with _our_fds_lock:
        ours = fd in _our_fds
        _our_fds.discard(fd)
    if ours:
        _dead_socket_over(fd)
    if invalidate:
        lease.invalidate()
    else:
        lease.release()


def _mysqldb_class():
    import MySQLdb
    import MySQLdb.connections

    class Connection(MySQLdb.connections.Connection):
        """mysqlclient's Connection on a forkpool lease; close() gives the lease back."""

        _fp_fd = None

        def _fp_attach(self, lease, fd):
            self.forkpool_lease = lease
            self._fp_fd = fd
            self._fp_final = weakref.finalize(self, _mysqldb_give_back, lease, fd, True)

        @staticmethod
        def close_raw(conn):
            MySQLdb.connections.Connection.close(conn)

        def _fp_end(self, invalidate):
            final = getattr(self, "_fp_final", None)
            if final is None or not final.alive:
                return
            final.detach()
            # mysqlclient gives no status but autocommit: state unknown, forkpoold resets.
            _mysqldb_give_back(self.forkpool_lease, self._fp_fd, invalidate)
            # Frees the handle; its COM_QUIT goes to the dead socket.
            MySQLdb.connections.Connection.close(self)

        def close(self):
            self._fp_end(False)

        def forkpool_invalidate(self):
            self._fp_end(True)

        def ping(self, *a):
            return MySQLdb.connections.Connection.ping(self)

    return Connection


class _LazyStatic(_Lazy):
    def close_raw(self, conn):
        import MySQLdb
        MySQLdb.connections.Connection.close(conn)


_MySQLdbConnection = _LazyStatic(_mysqldb_class)


# ---------------------------------------------------------------- psycopg2

def dropin_loaded():
    """Whether this process's libpq.so.5 is forkpool's drop-in (a libpq.so.5 in a forkpool dir)."""
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.rstrip("\n").split(None, 5)[-1]
                if path.endswith("/libpq.so.5") or "/libpq.so.5." in path:
                    if os.path.basename(os.path.dirname(path)) == "forkpool":
                        return True
    except OSError:
        pass
    return False


def _psycopg2(pool, timeout, socket, label, kw):
    import psycopg2

    if not dropin_loaded():
        raise _driver_error(psycopg2.OperationalError, Error(
            "forkpool: psycopg2 needs forkpool's libpq drop-in (psycopg2 links libpq itself and "
            "cannot take a PGconn from outside): start the process with "
            "LD_LIBRARY_PATH=<libdir>/forkpool (or LD_PRELOAD=<libdir>/forkpool/libpq.so.5), "
            "or use driver='psycopg'", errno.EOPNOTSUPP))
    from . import _socket_path
    path = _socket_path(socket)
    if os.path.basename(path) != "forkpool.sock":
        raise _driver_error(psycopg2.OperationalError, Error(
            "forkpool: the libpq drop-in finds forkpoold by a socket named forkpool.sock in "
            "the connection's host directory; %s is not one" % path, errno.EINVAL))
    host = os.path.dirname(path)
    params = dict(kw)
    if timeout is not None:
        params["connect_timeout"] = max(1, int(round(timeout)))
    return psycopg2.connect(host=host, dbname=pool, **params)


_ADAPTERS = {"psycopg": _psycopg, "psycopg3": _psycopg, "pymysql": _pymysql,
             "mysqldb": _mysqldb, "mysqlclient": _mysqldb, "psycopg2": _psycopg2}


def connect(pool, driver, timeout, socket, label, kw):
    try:
        f = _ADAPTERS[driver.lower()]
    except KeyError:
        raise ValueError("forkpool.connect: unknown driver %r (one of %s)"
                         % (driver, ", ".join(sorted(_ADAPTERS)))) from None
    return f(pool, timeout, socket, label, dict(kw))
