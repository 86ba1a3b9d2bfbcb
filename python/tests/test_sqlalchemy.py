# SPDX-License-Identifier: MIT
"""forkpool.sqlalchemy.ForkPool: SQLAlchemy's pool API on forkpoold's pool."""
import os
import subprocess
import sys
import threading
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fptest  # noqa: E402

import sqlalchemy as sa  # noqa: E402
from sqlalchemy import event, exc, text  # noqa: E402
from sqlalchemy.orm import declarative_base, scoped_session, sessionmaker  # noqa: E402

import forkpool  # noqa: E402
from forkpool.sqlalchemy import ForkPool  # noqa: E402

EVENTS = ("connect", "first_connect", "checkout", "checkin", "reset", "invalidate",
          "soft_invalidate", "close")


class Base:
    sup = None
    scheme = None
    url = None

    @classmethod
    def tearDownClass(cls):
        if cls.sup:
            cls.sup.cleanup()
            cls.sup = None

    def setUp(self):
        os.environ["FORKPOOL_SOCKET"] = self.sup.socket
        forkpool._forget_handle()
        self.engines = []

    def tearDown(self):
        for e in self.engines:
            e.dispose()
        fptest.wait_for(lambda: forkpool.pool_state(self.sup.pool).checked_out == 0,
                        what="every lease back")

    def engine(self, **kw):
        u = sa.engine.make_url(self.url)
        url = "%s://%s@localhost/%s" % (self.scheme, fptest.user(self.url), fptest.database(self.url))
        if "database" in kw:
            url = "%s://%s@localhost/%s" % (self.scheme, fptest.user(self.url), kw.pop("database"))
        if "user" in kw:
            url = "%s://%s@localhost/%s" % (self.scheme, kw.pop("user"), u.database)
        e = sa.create_engine(url, poolclass=ForkPool, **kw)
        self.engines.append(e)
        return e

    def record(self, engine):
        seen = []
        for name in EVENTS:
            event.listen(engine.pool, name, (lambda n: lambda *a: seen.append(n))(name))
        return seen

    def backend_gone(self, backend):
        raise NotImplementedError

    # -------------------------------------------------------------- events

    def test_checkout_checkin_event_sequence(self):
        e = self.engine()
        seen = self.record(e)
        with e.connect() as c:
            self.assertEqual(c.execute(text(self.backend_sql)).scalar(),
                             c.connection.dbapi_connection.forkpool_lease.backend_pid())
            self.assertEqual(seen, ["first_connect", "connect", "checkout"])
            self.assertEqual(forkpool.pool_state(self.sup.pool).checked_out, 1)
        self.assertEqual(seen, ["first_connect", "connect", "checkout", "reset", "checkin",
                                "close"])
        del seen[:]
        with e.connect():
            pass
        # first_connect once per pool.
        self.assertEqual(seen, ["connect", "checkout", "reset", "checkin", "close"])

    def test_reset_on_return_is_not_run_in_the_worker(self):
        e = self.engine()
        with e.connect():
            pass  # the dialect's one-time initialize rolls back after itself
        calls = []
        orig = e.dialect.do_rollback
        e.dialect.do_rollback = lambda conn: (calls.append(1), orig(conn))
        # The pool's own check-in, with a transaction open: no rollback-on-return
        # (SQLAlchemy 2.0's Connection.close() rolls back its own transaction first,
        # which is the application's, not the pool's reset).
        raw = e.raw_connection()
        cur = raw.cursor()
        cur.execute("select 1")
        cur.fetchall()
        cur.close()
        raw.close()
        self.assertEqual(calls, [])

    def test_invalidate(self):
        e = self.engine()
        seen = self.record(e)
        c = e.connect()
        backend = c.execute(text(self.backend_sql)).scalar()
        del seen[:]
        c.invalidate()
        self.assertEqual(seen, ["invalidate", "close", "checkin"])
        c.close()
        # forkpool_invalidate: forkpoold closes that session instead of reusing it.
        try:
            fptest.wait_for(lambda: self.backend_gone(backend), 20,
                            what="the invalidated session closed")
        except AssertionError:
            raise AssertionError("session %s still there; forkpoold's log:\n%s"
                                 % (backend, self.sup.read_log()))
        with e.connect() as c:
            self.assertNotEqual(c.execute(text(self.backend_sql)).scalar(), backend)

    def test_soft_invalidate(self):
        e = self.engine()
        seen = self.record(e)
        c = e.connect()
        backend = c.execute(text(self.backend_sql)).scalar()
        del seen[:]
        c.connection.invalidate(soft=True)
        self.assertEqual(seen, ["soft_invalidate"])
        # Still usable until it comes back.
        self.assertEqual(c.execute(text(self.backend_sql)).scalar(), backend)
        c.close()
        self.assertEqual(seen, ["soft_invalidate", "reset", "checkin", "close"])
        try:
            fptest.wait_for(lambda: self.backend_gone(backend), 20,
                            what="the soft-invalidated session closed")
        except AssertionError:
            raise AssertionError("session %s still there; forkpoold's log:\n%s"
                                 % (backend, self.sup.read_log()))

    def test_timeout_error(self):
        e = self.engine(pool_timeout=0.3)
        held = [e.connect() for _ in range(2)]
        try:
            with self.assertRaises(exc.TimeoutError) as cm:
                e.connect()
            self.assertTrue(str(cm.exception).startswith(
                "QueuePool limit of size 2 overflow 0 reached, connection timed out, "
                "timeout 0.30"), str(cm.exception))
            self.assertEqual(cm.exception.code, "3o7r")
        finally:
            for c in held:
                c.close()

    def test_status_from_two_processes_agrees(self):
        e = self.engine()
        c = e.connect()
        try:
            mine = e.pool.status()
            self.assertEqual(mine, "Pool size: 2  Connections in pool: %d Current Overflow: %d "
                             "Current Checked out connections: 1"
                             % (forkpool.pool_state(self.sup.pool).idle,
                                forkpool.pool_state(self.sup.pool).overflow))
            code = ("import sqlalchemy as sa; from forkpool.sqlalchemy import ForkPool; "
                    "print(sa.create_engine(%r, poolclass=ForkPool).pool.status())"
                    % str(e.url))
            other = subprocess.run([fptest.PY, "-c", code], env=self.sup.env(), timeout=60,
                                   capture_output=True, text=True)
            self.assertEqual(other.returncode, 0, other.stderr)
            self.assertEqual(other.stdout.strip(), mine)
        finally:
            c.close()

    def test_begin_exception_rolls_back(self):
        e = self.engine()
        with e.begin() as c:
            c.execute(text("create table if not exists fp_sa_rb (v int)"))
            c.execute(text("delete from fp_sa_rb"))
        with self.assertRaises(RuntimeError):
            with e.begin() as c:
                c.execute(text("insert into fp_sa_rb values (1)"))
                raise RuntimeError("boom")
        with e.connect() as c:
            self.assertEqual(c.execute(text("select count(*) from fp_sa_rb")).scalar(), 0)

    def test_each_checkout_is_a_clean_session(self):
        e = self.engine()
        backends = set()
        for i in range(4):
            with e.connect() as c:
                backends.add(c.execute(text(self.backend_sql)).scalar())
                self.assertIsNone(c.execute(text(self.read_var_sql)).scalar())
                c.execute(text(self.set_var_sql))
                self.assertEqual(c.execute(text(self.read_var_sql)).scalar(), "dirty")
        self.assertLessEqual(len(backends), 2)

    def test_pre_ping_is_forkpoolds(self):
        e = self.engine(pool_pre_ping=True)
        pings = []
        e.dialect.do_ping = lambda conn: pings.append(1) or True
        for _ in range(3):
            with e.connect() as c:
                c.execute(text("select 1"))
        self.assertEqual(pings, [])

    def test_recreate_and_dispose(self):
        e = self.engine()
        seen = self.record(e)
        with e.connect():
            pass
        e.dispose()  # this process's state only; the engine gets a recreated pool
        self.assertIsInstance(e.pool, ForkPool)
        del seen[:]
        with e.connect() as c:
            self.assertEqual(c.execute(text("select 1")).scalar(), 1)
        # Listeners carried over; first_connect fires for the new pool.
        self.assertEqual(seen, ["first_connect", "connect", "checkout", "reset", "checkin",
                                "close"])
        p = e.pool.recreate()
        self.assertIsInstance(p, ForkPool)
        self.assertEqual(p.status(), e.pool.status())

    def test_scoped_session(self):
        e = self.engine()
        Model = declarative_base()

        class Item(Model):
            __tablename__ = "fp_sa_items"
            id = sa.Column(sa.Integer, primary_key=True, autoincrement=False)
            name = sa.Column(sa.String(40))

        Model.metadata.drop_all(e)
        Model.metadata.create_all(e)
        Session = scoped_session(sessionmaker(bind=e))
        errors = []

        def work(k):
            try:
                for i in range(10):
                    Session.add(Item(id=k * 100 + i, name="item %d" % i))
                    Session.commit()
                self.assertEqual(Session.query(Item).filter(Item.id >= k * 100,
                                                            Item.id < k * 100 + 100).count(), 10)
                obj = Session.get(Item, k * 100)
                obj.name = "renamed"
                Session.commit()
            except Exception as ex:  # reported below
                errors.append(ex)
            finally:
                Session.remove()

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        with e.connect() as c:
            self.assertEqual(c.execute(text("select count(*) from fp_sa_items")).scalar(), 40)
            self.assertEqual(c.execute(text(
                "select count(*) from fp_sa_items where name = 'renamed'")).scalar(), 4)
        Model.metadata.drop_all(e)

    # -------------------------------------------------------------- bad input

    def test_url_for_another_database(self):
        e = self.engine(database="not_the_pools_db", forkpool_pool=self.sup.pool)
        with self.assertRaises(exc.ArgumentError) as cm:
            e.connect()
        self.assertIn("database 'not_the_pools_db'", str(cm.exception))
        self.assertIn(self.sup.pool, str(cm.exception))

    def test_url_for_another_user(self):
        e = self.engine(user="someone_else")
        with self.assertRaises(exc.ArgumentError) as cm:
            e.connect()
        self.assertIn("user 'someone_else'", str(cm.exception))

    def test_pool_size_contradicting_forkpoold(self):
        with self.assertRaises(exc.ArgumentError) as cm:
            self.engine(pool_size=7)
        self.assertIn("pool_size=7 contradicts forkpoold's pool", str(cm.exception))
        self.assertIn("pool_size 2", str(cm.exception))
        with self.assertRaises(exc.ArgumentError):
            self.engine(max_overflow=5)
        # Agreeing values are fine.
        with self.engine(pool_size=2, max_overflow=0).connect() as c:
            self.assertEqual(c.execute(text("select 1")).scalar(), 1)

    def test_forkpoold_down(self):
        e = self.engine(forkpool_socket=os.path.join(self.sup.dir, "nothing-here.sock"))
        with self.assertRaises(exc.OperationalError) as cm:
            e.connect()
        self.assertIn("cannot reach forkpoold", str(cm.exception))

    def test_disallowed_user(self):
        if os.geteuid() != 0:
            self.skipTest("needs root (runuser -u nobody)")
        code = ("import sqlalchemy as sa; from forkpool.sqlalchemy import ForkPool\n"
                "try:\n"
                "    sa.create_engine(%r, poolclass=ForkPool).connect()\n"
                "except sa.exc.OperationalError as e:\n"
                "    print('OperationalError', e)\n" % str(self.engine().url))
        r = subprocess.run(["runuser", "-u", "nobody", "--", fptest.PY, "-c", code],
                           env=self.sup.env_for_another_user(), timeout=60, capture_output=True,
                           text=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("OperationalError"), r.stdout + r.stderr)
        self.assertIn("not allowed", r.stdout.lower().replace("permission denied", "not allowed"))


class TestPostgreSQL(Base, unittest.TestCase):
    scheme = "postgresql+psycopg"
    backend_sql = "select pg_backend_pid()"
    read_var_sql = "select nullif(current_setting('fp.test', true), '')"
    set_var_sql = "set fp.test = 'dirty'"

    @classmethod
    def setUpClass(cls):
        cls.url = fptest.pg_url()
        cls.sup = fptest.Supervisor(cls.url, pool_lines="pool_size = 2\nmax_overflow = 0\n"
                                    "reset_on_return = auto")

    def backend_gone(self, backend):
        with fptest.pg_direct() as c:
            return c.execute("select count(*) from pg_stat_activity where pid = %s",
                             (backend,)).fetchone()[0] == 0


class TestMariaDB(Base, unittest.TestCase):
    scheme = "mysql+pymysql"
    backend_sql = "select connection_id()"
    read_var_sql = "select @fp_test"
    set_var_sql = "set @fp_test = 'dirty'"

    @classmethod
    def setUpClass(cls):
        cls.url = fptest.my_url()
        cls.sup = fptest.Supervisor(cls.url, pool_lines="pool_size = 2\nmax_overflow = 0\n"
                                    "reset_on_return = discard")

    def backend_gone(self, backend):
        d = fptest.my_direct()
        try:
            with d.cursor() as cur:
                cur.execute("select count(*) from information_schema.PROCESSLIST where id = %s",
                            (backend,))
                return cur.fetchone()[0] == 0
        finally:
            d.close()


class TestMariaDBMySQLdb(TestMariaDB):
    scheme = "mysql+mysqldb"


del Base

if __name__ == "__main__":
    unittest.main(verbosity=2)
