# SPDX-License-Identifier: MIT
"""Fixtures of the Python package's tests: a forkpoold of their own on the
scratch servers that tests/run.sh starts (FORKPOOL_TEST_* variables), like
tests/integration/itest.c does for the C tests.

Environment: FORKPOOL_FORKPOOLD (the forkpoold to run), FORKPOOL_LIBRARY
(the libforkpool to load), FORKPOOL_TEST_PG_URL / FORKPOOL_TEST_MY_URL and
the rest of tests/run.sh's variables.

A forkpoold (and a server such as gunicorn) that a test starts never outlives
the test process, whichever way it ends: stop() in the tests' finally and
tearDownClass; at interpreter exit (an exception nobody caught, sys.exit); at
SIGTERM (a handler stops them, then the process dies of the signal as it
would have); and when the process dies without running any of that (SIGKILL,
a ctest timeout): the child has a parent-death signal, SIGTERM
(PR_SET_PDEATHSIG, through setpriv).
"""
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest
import urllib.parse

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "python3"
HERE = os.path.dirname(os.path.abspath(__file__))
PKG_ROOT = os.path.dirname(HERE)
# The source tree's package, unless the installed one is under test.
if not os.environ.get("FORKPOOL_TEST_INSTALLED") and PKG_ROOT not in sys.path:
    sys.path.insert(0, PKG_ROOT)


def need_env(*names):
    missing = [n for n in names if not os.environ.get(n)]
    if missing and os.environ.get("FORKPOOL_TEST_REQUIRE_ENV"):
        # Under ctest (tests/run.sh): a missing server is a failure, not a skip.
        raise AssertionError("not set: " + ", ".join(missing))
    if missing:
        raise unittest.SkipTest("not set: " + ", ".join(missing))


def pg_url():
    need_env("FORKPOOL_TEST_PG_URL")
    return os.environ["FORKPOOL_TEST_PG_URL"]


def my_url():
    need_env("FORKPOOL_TEST_MY_URL")
    return os.environ["FORKPOOL_TEST_MY_URL"]


def database(url):
    return urllib.parse.urlsplit(url).path.lstrip("/")


def user(url):
    return urllib.parse.unquote(urllib.parse.urlsplit(url).username or "")


SETPRIV = shutil.which("setpriv")


def popen_tied(args, **kw):
    """subprocess.Popen(args) of a child that gets SIGTERM when this process
    dies: setpriv --pdeathsig sets it, then execs args (the same pid). The
    signal follows the thread that starts the child, so only the main
    thread's children are tied (another thread's would be stopped when that
    thread ends); without setpriv they are not (the other exit paths still
    stop them)."""
    if SETPRIV and threading.current_thread() is threading.main_thread():
        args = [SETPRIV, "--pdeathsig", "TERM", "--"] + list(args)
    return subprocess.Popen(args, **kw)


# The Supervisors whose forkpoold runs, stopped if the process ends before their tests stop them.
_running = set()
_owner = os.getpid()


def _stop_running():
    # Only in the process that started them: a forked child inherits the set and these hooks.
    if os.getpid() != _owner:
        return
    for s in list(_running):
        s.cleanup()


def _on_sigterm(signum, frame):
    _stop_running()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


atexit.register(_stop_running)
if threading.current_thread() is threading.main_thread() and \
        signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _on_sigterm)


class Supervisor:
    """A forkpoold with one pool, in a fresh directory; stop() ends it."""

    def __init__(self, url, pool=None, pool_lines="", global_lines=""):
        need_env("FORKPOOL_FORKPOOLD")
        self.pool = pool or database(url)
        self.dir = tempfile.mkdtemp(prefix="fp-py-")
        os.chmod(self.dir, 0o755)
        self.socket = os.path.join(self.dir, "forkpool.sock")
        self.config = os.path.join(self.dir, "forkpool.conf")
        self.logpath = os.path.join(self.dir, "forkpoold.log")
        with open(self.config, "w") as f:
            f.write("[forkpool]\nsocket = %s\nshutdown_grace = 3\n%s\n[pool %s]\nurl = %s\n%s\n"
                    % (self.socket, global_lines, self.pool, url, pool_lines))
        os.chmod(self.config, 0o600)
        self.proc = None
        self.start()

    def start(self):
        self.log = open(self.logpath, "ab")
        self.proc = popen_tied(
            [os.environ["FORKPOOL_FORKPOOLD"], "--config", self.config, "--log-level", "debug"],
            stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL, start_new_session=True)
        _running.add(self)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()  # a forkpoold that did not come up is not left behind
            raise

    def _wait_ready(self):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("forkpoold exited with %s:\n%s" % (self.proc.returncode,
                                                                      self.read_log()))
            if os.path.exists(self.socket):
                s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
                try:
                    s.connect(self.socket)
                    return
                except OSError:
                    pass
                finally:
                    s.close()
            time.sleep(0.05)
        raise RuntimeError("forkpoold did not create %s" % self.socket)

    def read_log(self):
        with open(self.logpath, "rb") as f:
            return f.read().decode("utf-8", "replace")[-4000:]

    def env(self, **extra):
        e = dict(os.environ)
        e["FORKPOOL_SOCKET"] = self.socket
        e["PYTHONPATH"] = PKG_ROOT + (":" + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
        e.update(extra)
        return e

    def env_for_another_user(self, **extra):
        """env(), for a process of another uid: the package and the library are
        copied where that uid can read them (the source and build trees may sit
        in directories only their owner can enter)."""
        lib = os.path.join(self.dir, "pylib")
        if not os.path.isdir(lib):
            shutil.copytree(os.path.join(PKG_ROOT, "forkpool"), os.path.join(lib, "forkpool"),
                            ignore=shutil.ignore_patterns("__pycache__"))
            if os.environ.get("FORKPOOL_LIBRARY"):
                shutil.copy(os.environ["FORKPOOL_LIBRARY"], os.path.join(lib, "libforkpool.so.0"))
            for root, dirs, files in os.walk(lib):
                os.chmod(root, 0o755)
                for f in files:
                    os.chmod(os.path.join(root, f), 0o644)
        e = self.env(**extra)
        e["PYTHONPATH"] = lib
        if os.environ.get("FORKPOOL_LIBRARY"):
            e["FORKPOOL_LIBRARY"] = os.path.join(lib, "libforkpool.so.0")
        return e

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None
        _running.discard(self)
        if self.log:
            self.log.close()
            self.log = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError("timed out after %.1f s waiting for %s" % (timeout, what))


def pg_direct():
    """A direct psycopg connection to the scratch PostgreSQL (for checks, not through forkpool)."""
    import psycopg

    u = urllib.parse.urlsplit(pg_url())
    q = dict(urllib.parse.parse_qsl(u.query))
    return psycopg.connect(host=q.get("host") or u.hostname, port=q.get("port") or u.port,
                           user=u.username, dbname=u.path.lstrip("/"), autocommit=True)


def my_direct():
    """A direct PyMySQL connection to the scratch MariaDB."""
    import pymysql

    need_env("FORKPOOL_TEST_MY_SOCKET", "FORKPOOL_TEST_MY_USER")
    return pymysql.connect(unix_socket=os.environ["FORKPOOL_TEST_MY_SOCKET"],
                           user=os.environ["FORKPOOL_TEST_MY_USER"],
                           password=os.environ.get("FORKPOOL_TEST_MY_PASSWORD", ""),
                           database=os.environ.get("FORKPOOL_TEST_MY_DATABASE"), autocommit=True)


def pg_connections():
    """Client backends of the test database other than the caller's."""
    with pg_direct() as c:
        return c.execute("select count(*) from pg_stat_activity where datname = %s and "
                         "backend_type = 'client backend' and pid <> pg_backend_pid()",
                         (database(pg_url()),)).fetchone()[0]


def my_connections(c=None):
    """Sessions of the test user other than the caller's."""
    own = c is None
    c = c or my_direct()
    try:
        with c.cursor() as cur:
            cur.execute("select count(*) from information_schema.PROCESSLIST where user = %s "
                        "and id <> connection_id()", (os.environ["FORKPOOL_TEST_MY_USER"],))
            return cur.fetchone()[0]
    finally:
        if own:
            c.close()
