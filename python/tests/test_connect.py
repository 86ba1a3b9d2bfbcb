# SPDX-License-Identifier: MIT
"""forkpool.connect(): real DBAPI connections on leased sessions, per driver."""
import os
import signal
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fptest  # noqa: E402

import forkpool  # noqa: E402


class Base:
    driver = None
    sup = None

    @classmethod
    def tearDownClass(cls):
        if cls.sup:
            cls.sup.cleanup()
            cls.sup = None

    def setUp(self):
        os.environ["FORKPOOL_SOCKET"] = self.sup.socket
        forkpool._forget_handle()
        # What the test before gave back (or a killed worker's, reclaimed) is back.
        self.idle(0)

    def idle(self, n):
        fptest.wait_for(lambda: forkpool.pool_state(self.sup.pool).idle >= n
                        and forkpool.pool_state(self.sup.pool).checked_out == 0,
                        what="%d idle connections, none out" % n)

    def test_queries_hit_the_leased_session(self):
        c = forkpool.connect(self.sup.pool, driver=self.driver)
        lease_backend = c.forkpool_lease.backend_pid()
        self.assertEqual(self.backend_of(c), lease_backend)
        self.assertEqual(forkpool.pool_state(self.sup.pool).checked_out, 1)
        c.close()
        self.idle(1)
        c.close()  # twice: nothing more

    def test_fork_child_cannot_use_inherited_connection(self):
        c = forkpool.connect(self.sup.pool, driver=self.driver)
        backend = self.backend_of(c)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                self.backend_of(c)
                res = b"used"
            except Exception:
                res = b"refused"
            try:
                c.close()  # frees memory only
            except Exception:
                res += b" close-raised"
            os.write(w, res)
            os._exit(0)
        os.close(w)
        res = os.read(r, 100)
        os.close(r)
        os.waitpid(pid, 0)
        self.assertEqual(res, b"refused")
        # The parent's session is untouched by the child's attempt and close.
        self.assertEqual(self.backend_of(c), backend)
        self.assertEqual(forkpool.pool_state(self.sup.pool).checked_out, 1)
        c.close()
        self.idle(1)

    def test_killed_worker_mid_transaction_loses_nothing(self):
        c = forkpool.connect(self.sup.pool, driver=self.driver)
        self.execute(c, "create table if not exists fp_py_kill (v int)")
        self.execute(c, "delete from fp_py_kill")
        self.commit(c)
        c.close()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            forkpool._handles.clear()
            cc = forkpool.connect(self.sup.pool, driver=self.driver)
            self.execute(cc, "insert into fp_py_kill values (42)")
            os.write(w, b"x")
            time.sleep(60)
            os._exit(0)
        os.close(w)
        self.assertEqual(os.read(r, 1), b"x")
        os.close(r)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        fptest.wait_for(lambda: forkpool.pool_state(self.sup.pool).checked_out == 0,
                        what="the dead worker's lease reclaimed")
        c = forkpool.connect(self.sup.pool, driver=self.driver)
        self.assertEqual(self.scalar(c, "select count(*) from fp_py_kill"), 0)
        c.close()

    def test_bad_pool_is_operational_error(self):
        with self.assertRaises(self.operational_error()) as cm:
            forkpool.connect("no_such_pool", driver=self.driver)
        self.assertIn("no_such_pool", str(cm.exception))
        self.assertIsInstance(cm.exception, forkpool.Error)

    # helpers per driver
    def execute(self, c, sql):
        cur = c.cursor()
        cur.execute(sql)
        cur.close()

    def scalar(self, c, sql):
        cur = c.cursor()
        cur.execute(sql)
        v = cur.fetchone()[0]
        cur.close()
        return v

    def commit(self, c):
        c.commit()


class TestPsycopg(Base, unittest.TestCase):
    driver = "psycopg"

    @classmethod
    def setUpClass(cls):
        cls.sup = fptest.Supervisor(fptest.pg_url(), pool_lines="pool_size = 2\nmax_overflow = 0")

    def backend_of(self, c):
        return self.scalar(c, "select pg_backend_pid()")

    def operational_error(self):
        import psycopg
        return psycopg.OperationalError

    def test_psycopg_does_not_finish_the_leased_pgconn(self):
        c = forkpool.connect(self.sup.pool, driver="psycopg")
        b = self.backend_of(c)
        c.close()
        self.idle(1)
        # The same session is handed out again: psycopg did not end it.
        c = forkpool.connect(self.sup.pool, driver="psycopg")
        self.assertEqual(self.backend_of(c), b)
        c.close()

    def test_psycopg2_through_the_dropin(self):
        if not os.environ.get("FORKPOOL_DROPIN_LIBRARY"):
            self.skipTest("no drop-in built (FORKPOOL_DROPIN_LIBRARY)")
        import shutil
        import subprocess
        import tempfile
        d = tempfile.mkdtemp(prefix="fp-py-dropin-")
        try:
            libdir = os.path.join(d, "forkpool")
            os.mkdir(libdir)
            shutil.copy(os.environ["FORKPOOL_DROPIN_LIBRARY"], os.path.join(libdir, "libpq.so.5"))
            code = ("import forkpool, forkpool._drivers as d\n"
                    "c = forkpool.connect(%r, driver='psycopg2')\n"
                    "assert d.dropin_loaded()\n"
                    "cur = c.cursor(); cur.execute('select pg_backend_pid()')\n"
                    "print(cur.fetchone()[0], forkpool.pool_state(%r).checked_out)\n"
                    "c.close()\n" % (self.sup.pool, self.sup.pool))
            r = subprocess.run([fptest.PY, "-c", code], capture_output=True, text=True,
                               timeout=60, env=self.sup.env(LD_LIBRARY_PATH=libdir))
            self.assertEqual(r.returncode, 0, r.stderr)
            backend, out = map(int, r.stdout.split())
            self.assertEqual(out, 1)
            self.idle(1)
            # The drop-in's lease was a session of this forkpoold's pool.
            self.assertIn("connected, backend %d\n" % backend, self.sup.read_log())
        finally:
            shutil.rmtree(d, ignore_errors=True)

    def test_psycopg2_needs_the_dropin(self):
        import psycopg2
        with self.assertRaises(psycopg2.OperationalError) as cm:
            forkpool.connect(self.sup.pool, driver="psycopg2")
        self.assertIn("drop-in", str(cm.exception))


class TestPyMySQL(Base, unittest.TestCase):
    driver = "pymysql"

    @classmethod
    def setUpClass(cls):
        cls.sup = fptest.Supervisor(fptest.my_url(), pool_lines="pool_size = 2\nmax_overflow = 0")

    def backend_of(self, c):
        return self.scalar(c, "select connection_id()")

    def operational_error(self):
        import pymysql
        return pymysql.err.OperationalError

    def test_types_and_transactions(self):
        import decimal
        c = forkpool.connect(self.sup.pool, driver="pymysql")
        cur = c.cursor()
        cur.execute("select 1, 'é', 1.5, cast(3 as unsigned)")
        self.assertEqual(cur.fetchone(), (1, "é", decimal.Decimal("1.5"), 3))
        self.assertFalse(c.get_autocommit())
        cur.execute("create table if not exists fp_py_tx (v int) engine=innodb")
        cur.execute("delete from fp_py_tx")
        c.commit()
        cur.execute("insert into fp_py_tx values (1)")
        c.rollback()
        cur.execute("select count(*) from fp_py_tx")
        self.assertEqual(cur.fetchone()[0], 0)
        cur.execute("insert into fp_py_tx values (2)")
        c.close()  # transaction open: forkpoold rolls it back
        self.idle(1)
        d = fptest.my_direct()
        with d.cursor() as cur:
            cur.execute("select count(*) from fp_py_tx")
            self.assertEqual(cur.fetchone()[0], 0)
        d.close()


class TestMySQLdb(TestPyMySQL):
    driver = "mysqldb"

    def operational_error(self):
        import MySQLdb
        return MySQLdb.OperationalError

    def test_types_and_transactions(self):
        import decimal
        c = forkpool.connect(self.sup.pool, driver="mysqldb")
        cur = c.cursor()
        cur.execute("select 1, 'é', 1.5")
        self.assertEqual(cur.fetchone(), (1, "é", decimal.Decimal("1.5")))
        cur.execute("create table if not exists fp_py_tx2 (v int) engine=innodb")
        cur.execute("delete from fp_py_tx2")
        c.commit()
        cur.execute("insert into fp_py_tx2 values (2)")
        c.close()
        self.idle(1)
        d = fptest.my_direct()
        with d.cursor() as cur:
            cur.execute("select count(*) from fp_py_tx2")
            self.assertEqual(cur.fetchone()[0], 0)
        d.close()


del Base

if __name__ == "__main__":
    unittest.main(verbosity=2)
