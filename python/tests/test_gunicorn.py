# SPDX-License-Identifier: MIT
"""A Flask-SQLAlchemy app under gunicorn (16 sync workers) on a 3-connection forkpool pool."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fptest  # noqa: E402
import loadgen  # noqa: E402

WORKERS = 16
THREADS = 32
PER_THREAD = 20  # 640 requests
POOL_SIZE = 3


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Gunicorn:
    def __init__(self, env, workers=WORKERS):
        self.port = free_port()
        self.log = open(os.path.join(env.get("FPT_LOGDIR", "/tmp"), "gunicorn-%d.log" % self.port), "w+")
        self.proc = fptest.popen_tied(
            ["/usr/bin/gunicorn", "-w", str(workers), "-k", "sync", "-b",
             "127.0.0.1:%d" % self.port, "--chdir", fptest.HERE, "--timeout", "60",
             "--graceful-timeout", "5", "flask_app:app"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True)
        try:
            self._wait_ready(workers)
        except BaseException:
            self.stop()  # a gunicorn that did not come up is not left behind
            raise

    def _wait_ready(self, workers):
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("gunicorn exited: " + self.read_log())
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/health" % self.port, timeout=2):
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("gunicorn did not answer: " + self.read_log())
        # Every worker booted (each answers /health once it has imported the app).
        fptest.wait_for(lambda: self.read_log().count("Booting worker") >= workers, 90,
                        "%d workers booted" % workers)

    def read_log(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-6000:]

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


class Base:
    url = None
    sa_url = None
    count_connections = None
    create_sql = None

    def test_hundreds_of_concurrent_requests_on_three_connections(self):
        # Sessions of the same user that are not this test's (another forkpoold's).
        conn = self.monitor()
        baseline = self.count_connections(conn)
        conn.close()
        sup = fptest.Supervisor(self.pool_url(), pool_lines="pool_size = %d\nmax_overflow = 0\n"
                                "pool_timeout = 60" % POOL_SIZE)
        try:
            self.prepare()
            env = sup.env(FPT_URL=self.sa_url(), FPT_LOGDIR=sup.dir)
            g = Gunicorn(env)
            samples, stop = [], threading.Event()

            def sample():
                conn = self.monitor()
                try:
                    while not stop.is_set():
                        samples.append(self.count_connections(conn) - baseline)
                        time.sleep(0.05)
                finally:
                    conn.close()

            t = threading.Thread(target=sample)
            t.start()
            try:
                results, secs = loadgen.run("127.0.0.1", g.port, "/hit", THREADS, PER_THREAD)
            finally:
                stop.set()
                t.join(30)
                log = g.read_log()
                g.stop()
            n = THREADS * PER_THREAD
            bad = [r for r in results if r[0] != 200]
            self.assertEqual(len(results), n)
            self.assertEqual(bad[:3], [], "failed requests (%d); gunicorn log:\n%s\nforkpoold:\n%s"
                             % (len(bad), log, sup.read_log()))
            bodies = [json.loads(r[1]) for r in results]
            backends = {b["backend"] for b in bodies}
            pids = {b["pid"] for b in bodies}
            self.assertLessEqual(len(backends), POOL_SIZE, backends)
            self.assertGreater(len(pids), 1, "requests were spread over the workers")
            self.assertGreater(len(samples), 3)
            self.assertLessEqual(max(samples), POOL_SIZE, samples)
            self.assertGreater(max(samples), 0)
            # Every request's write committed.
            self.assertEqual(self.hits(), n)
            print("\n%s: %d requests in %.1f s (%.0f/s), %d workers used, %d backends, "
                  "server connections sampled: max %d" % (type(self).__name__, n, secs, n / secs,
                                                          len(pids), len(backends), max(samples)))
        finally:
            sup.cleanup()


class TestPyMySQL(Base, unittest.TestCase):
    def url(self):
        return fptest.my_url()

    pool_url = url

    def sa_url(self):
        return "mysql+pymysql://%s@localhost/%s" % (fptest.user(self.url()),
                                                    fptest.database(self.url()))

    def monitor(self):
        return fptest.my_direct()

    @staticmethod
    def count_connections(conn):
        return fptest.my_connections(conn)

    def prepare(self):
        c = fptest.my_direct()
        with c.cursor() as cur:
            cur.execute("drop table if exists fp_hits")
            cur.execute("create table fp_hits (id int auto_increment primary key, worker int) "
                        "engine=innodb")
        c.close()

    def hits(self):
        c = fptest.my_direct()
        with c.cursor() as cur:
            cur.execute("select count(*) from fp_hits")
            n = cur.fetchone()[0]
        c.close()
        return n


class TestMySQLdb(TestPyMySQL):
    def sa_url(self):
        return "mysql+mysqldb://%s@localhost/%s" % (fptest.user(self.url()),
                                                    fptest.database(self.url()))


APP_NAME = "fp_py_gunicorn"


class TestPsycopg(Base, unittest.TestCase):
    def url(self):
        return fptest.pg_url()

    def pool_url(self):
        u = self.url()
        return u + ("&" if "?" in u else "?") + "application_name=" + APP_NAME

    def sa_url(self):
        return "postgresql+psycopg://%s@localhost/%s" % (fptest.user(self.url()),
                                                         fptest.database(self.url()))

    def monitor(self):
        return fptest.pg_direct()

    @staticmethod
    def count_connections(conn):
        return conn.execute("select count(*) from pg_stat_activity where datname = %s and "
                            "application_name = %s and pid <> pg_backend_pid()",
                            (fptest.database(fptest.pg_url()), APP_NAME)).fetchone()[0]

    def prepare(self):
        with fptest.pg_direct() as c:
            c.execute("drop table if exists fp_hits")
            c.execute("create table fp_hits (id serial primary key, worker int)")

    def hits(self):
        with fptest.pg_direct() as c:
            return c.execute("select count(*) from fp_hits").fetchone()[0]


del Base

if __name__ == "__main__":
    unittest.main(verbosity=2)
