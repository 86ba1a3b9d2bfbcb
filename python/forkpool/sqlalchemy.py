# SPDX-License-Identifier: MIT
"""SQLAlchemy's pool API backed by forkpool.

    from sqlalchemy import create_engine
    from forkpool.sqlalchemy import ForkPool
    engine = create_engine("mysql+pymysql://app@localhost/appdb", poolclass=ForkPool)
    engine.pool.status()     # forkpool's line, read from forkpoold's segment

Every checkout is a lease from forkpoold's pool (a real DBAPI connection of the
engine's driver, made by forkpool.connect()), every checkin a release. The
pool is the URL's database unless the engine is given forkpool_pool="name";
forkpool_socket= names forkpoold's socket (default: $FORKPOOL_SOCKET, else
/run/forkpool/forkpool.sock). Written for SQLAlchemy 1.4 and, as documented,
2.0's Pool API.
"""
import os
import shutil
import subprocess

from sqlalchemy import exc
from sqlalchemy.pool import Pool

try:  # 1.4 and 2.0 both have it here
    from sqlalchemy.pool.base import reset_none
except ImportError:  # pragma: no cover
    reset_none = None

import forkpool

__all__ = ["ForkPool"]


def _register_psycopg_dialect():
    """SQLAlchemy 1.4 has no psycopg 3 dialect: register forkpool's minimal one."""
    from sqlalchemy.dialects import registry

    try:
        registry.load("postgresql.psycopg")
    except Exception:
        registry.register("postgresql.psycopg", "forkpool._sa_psycopg", "PGDialect_fpsycopg")


_register_psycopg_dialect()

_DATABASE_KEYS = ("database", "db", "dbname")
_USER_KEYS = ("user", "username")


def _creator_params(creator):
    """The DBAPI connect arguments create_engine() closed over (its default creator)."""
    code = getattr(creator, "__code__", None)
    cells = getattr(creator, "__closure__", None) or ()
    if code is None:
        return None
    for name, cell in zip(code.co_freevars, cells):
        try:
            value = cell.cell_contents
        except ValueError:
            continue
        if name == "cparams" and isinstance(value, dict):
            return value
    return None


class ForkPool(Pool):
    """A Pool whose connections are leases from forkpoold.

    forkpoold owns the pool's size, overflow, recycling, pre-ping and reset
    on return: pool_size / max_overflow given here must agree with
    forkpoold's (checked against its segment; a contradiction is an
    ArgumentError); pool_recycle, pool_pre_ping and pool_use_lifo are
    accepted and left to forkpoold's own settings; SQLAlchemy's
    rollback-on-return is not run (the "reset" event still fires) because
    forkpoold resets the session itself when it comes back. pool_timeout
    is the acquire's timeout (default: forkpoold's pool_timeout).
    """

    def __init__(self, creator, forkpool_pool=None, forkpool_socket=None,
                 forkpool_dispose="process", pool_size=None, max_overflow=None,
                 timeout=None, use_lifo=None, **kw):
        if forkpool_dispose not in ("process", "supervisor"):
            raise exc.ArgumentError("ForkPool: forkpool_dispose must be 'process' or "
                                    "'supervisor', not %r" % (forkpool_dispose,))
        # Ours, not SQLAlchemy's: no ping in the worker (forkpoold's pool_pre_ping).
        self._fp_pre_ping_asked = kw.pop("pre_ping", False)
        Pool.__init__(self, creator, **kw)
        if reset_none is not None:
            # forkpoold resets on return; the "reset" event still fires.
            self._reset_on_return = reset_none
        self._invoke_creator = self._fp_connect
        params = _creator_params(creator) or {}
        self._fp_url_db = next((params[k] for k in _DATABASE_KEYS if params.get(k)), None)
        self._fp_url_user = next((params[k] for k in _USER_KEYS if params.get(k)), None)
        self._fp_pool = forkpool_pool or self._fp_url_db
        if not self._fp_pool:
            raise exc.ArgumentError(
                "ForkPool: the URL names no database, so no forkpool pool; pass "
                "forkpool_pool='name' to create_engine()")
        self._fp_socket = forkpool_socket
        self._fp_dispose = forkpool_dispose
        self._fp_size = pool_size
        self._fp_max_overflow = max_overflow
        self._fp_timeout = timeout
        self._fp_use_lifo = use_lifo
        self._fp_checked = False
        try:
            self._fp_check_options(forkpool.pool_state(self._fp_pool, self._fp_socket))
        except forkpool.Error:
            pass  # forkpoold is not there yet: checked at the first checkout

    # ------------------------------------------------------------ checks

    def _fp_check_options(self, st):
        for name, ours, theirs in (("pool_size", self._fp_size, st.pool_size),
                                   ("max_overflow", self._fp_max_overflow, st.max_overflow)):
            if ours is not None and ours != theirs:
                raise exc.ArgumentError(
                    "ForkPool: %s=%r contradicts forkpoold's pool %r (%s %d): the pool's size "
                    "is forkpoold's; drop %s or make it %d"
                    % (name, ours, self._fp_pool, name, theirs, name, theirs))
        self._fp_checked = True

    def _fp_check_session(self, user, db):
        """Refuses a URL for another database or user than the pool's sessions."""
        for what, ours, theirs in (("database", self._fp_url_db, db),
                                   ("user", self._fp_url_user, user)):
            if ours and theirs is not None and ours != theirs:
                raise exc.ArgumentError(
                    "ForkPool: the engine's URL is for %s %r, but forkpool pool %r holds "
                    "sessions of %s %r; fix the URL or name the right pool with forkpool_pool="
                    % (what, ours, self._fp_pool, what, theirs))

    # ------------------------------------------------------------ connections

    def _fp_driver(self):
        d = self._dialect
        driver = getattr(d, "driver", None)
        if not driver or driver == "default":
            raise exc.ArgumentError("ForkPool needs the engine's dialect (create_engine() passes it)")
        return driver

    def _fp_dbapi_error(self):
        d = getattr(self._dialect, "dbapi", None) or getattr(self._dialect, "loaded_dbapi", None)
        return getattr(d, "OperationalError", None)

    def _fp_connect(self, connection_record=None):
        if not self._fp_checked:
            try:
                st = forkpool.pool_state(self._fp_pool, self._fp_socket)
            except forkpool.Error:
                st = None
            if st is not None:
                self._fp_check_options(st)
        t = self._fp_timeout
        try:
            conn = forkpool.connect(self._fp_pool, driver=self._fp_driver(),
                                    timeout=t, socket=self._fp_socket)
        except forkpool.Error as e:
            if getattr(e, "forkpool_timeout", False) or isinstance(e, forkpool.PoolTimeout):
                raise self._fp_timeout_error(e) from None
            raise
        try:
            self._fp_check_session(*self._fp_session_identity(conn))
        except BaseException:
            _give_back(conn, invalidate=False)
            raise
        return conn

    @staticmethod
    def _fp_session_identity(conn):
        lease = getattr(conn, "forkpool_lease", None)
        if hasattr(conn, "pgconn"):
            return conn.pgconn.user.decode(), conn.pgconn.db.decode()
        if lease is not None:
            s = lease.mysql_session()
            return s.user.decode(), s.db.decode() or None
        return None, None

    def _fp_timeout_error(self, e):
        text = str(e)
        i = text.find("QueuePool limit")
        if i >= 0:
            msg = text[i:]
        else:
            try:
                st = forkpool.pool_state(self._fp_pool, self._fp_socket)
                size, over = st.pool_size, st.overflow
            except forkpool.Error:
                size = over = 0
            msg = ("QueuePool limit of size %d overflow %d reached, connection timed out, "
                   "timeout %0.2f" % (size, over, self._fp_timeout or 0))
        return exc.TimeoutError(msg, code="3o7r")

    def _do_get(self):
        return self._create_connection()

    def _do_return_conn(self, record):
        # A record serves one checkout: a soft invalidation during it (its time is set,
        # the "soft_invalidate" event has fired) makes forkpoold close the session.
        if getattr(record, "_soft_invalidate_time", 0):
            lease = getattr(record.dbapi_connection, "forkpool_lease", None)
            if lease is not None:
                lease.soft_invalidate()
        # The record's close() fires "close" and closes the DBAPI connection: a release.
        record.close()

    def _close_connection(self, connection, terminate=False):
        # terminate: an invalidation (SQLAlchemy's hard close) -> forkpool_invalidate.
        self.logger.debug("%s connection %r", "Invalidating" if terminate else "Releasing",
                          connection)
        try:
            _give_back(connection, invalidate=terminate)
        except Exception:
            self.logger.error("Exception closing connection %r", connection, exc_info=True)

    # ------------------------------------------------------------ pool API

    def status(self):
        try:
            return forkpool.pool_state(self._fp_pool, self._fp_socket).status()
        except forkpool.Error as e:
            return "ForkPool %s: %s" % (self._fp_pool, e)

    def _state(self):
        return forkpool.pool_state(self._fp_pool, self._fp_socket)

    def size(self):
        return self._state().pool_size

    def checkedin(self):
        return self._state().idle

    def checkedout(self):
        return self._state().checked_out

    def overflow(self):
        return self._state().overflow

    def timeout(self):
        return self._fp_timeout

    def recreate(self):
        self.logger.info("Pool recreating")
        kw = dict(
            forkpool_pool=self._fp_pool, forkpool_socket=self._fp_socket,
            forkpool_dispose=self._fp_dispose, pool_size=self._fp_size,
            max_overflow=self._fp_max_overflow, timeout=self._fp_timeout,
            recycle=self._recycle, echo=self.echo, logging_name=self._orig_logging_name,
            pre_ping=self._fp_pre_ping_asked, _dispatch=self.dispatch, dialect=self._dialect)
        new = self.__class__(self._creator, **kw)
        # Keep the URL's identity (the creator is the same).
        new._fp_url_db, new._fp_url_user = self._fp_url_db, self._fp_url_user
        return new

    def dispose(self):
        """forkpool_dispose='supervisor': forkpoold closes the pool's idle connections
        (and leased ones as they come back) — an admin command, through forkpoolctl.
        'process' (the default): only this process's state is dropped (the option
        checks are made again); nothing of the shared pool is touched, so a
        per-worker engine.dispose() after fork cannot empty everyone's pool."""
        self._fp_checked = False
        if self._fp_dispose != "supervisor":
            self.logger.info("Pool disposed (this process's state). %s", self.status())
            return
        ctl = os.environ.get("FORKPOOLCTL") or shutil.which("forkpoolctl")
        if not ctl:
            raise exc.InvalidRequestError("ForkPool.dispose(): forkpoolctl not found "
                                          "(set $FORKPOOLCTL)")
        args = [ctl]
        if self._fp_socket or os.environ.get("FORKPOOL_SOCKET"):
            args += ["--socket", forkpool._socket_path(self._fp_socket)]
        r = subprocess.run(args + ["dispose", self._fp_pool], capture_output=True,
                           text=True, timeout=15)
        if r.returncode != 0:
            raise exc.InvalidRequestError("ForkPool.dispose(): forkpoold refused: %s"
                                          % (r.stderr.strip() or r.stdout.strip()))
        self.logger.info("Pool disposed by forkpoold. %s", self.status())


def _give_back(connection, invalidate):
    if connection is None:
        return
    if invalidate and hasattr(connection, "forkpool_invalidate"):
        connection.forkpool_invalidate()
    else:
        connection.close()
