"""pyclients.py DRIVER SCENARIO --ci CONNINFO --app APP --mode dropin|direct [...]

The Python client scenarios of tests/dropin/python.sh, for one driver:
psycopg2, psycopg (psycopg 3, sync) or psycopg-async (psycopg 3, asyncio).
Prints one "ok - ..." or "FAIL - ..." line per check; exits 1 if any failed.

Scenarios:
  many      --procs N --connects M: N processes, each M times connect, query, close
  fork      a child that inherited a connection cannot use it (a clean error),
            closing it in the child harms nothing, the parent's keeps working
  cancel    conn.cancel() from another thread/task stops pg_sleep(10) at once
            (and PQhost reports the host= asked for); psycopg 3 with libpq >= 17:
            conn.cancel_safe() (libpq 17's cancel API) likewise
  hygiene   a transaction left open, then one aborted by a server error, each
            closed as is: the next lease of the same session is clean
  prepared  the same statements prepared in many connections (psycopg 3:
            prepare_threshold=0; psycopg2: PREPARE): no DuplicatePreparedStatement
"""
import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
import threading
import time

import clientchecks
from clientchecks import check, q1, read_to_end

ap = argparse.ArgumentParser()
ap.add_argument("driver", choices=["psycopg2", "psycopg", "psycopg-async"])
ap.add_argument("scenario", choices=["many", "fork", "cancel", "hygiene", "prepared"])
ap.add_argument("--ci", required=True)
ap.add_argument("--app", required=True)
ap.add_argument("--mode", required=True, choices=["dropin", "direct"])
ap.add_argument("--procs", type=int, default=16)
ap.add_argument("--connects", type=int, default=50)
ap.add_argument("--cap", type=int, default=3)
args = ap.parse_args()
DROPIN = args.mode == "dropin"
ASYNC = args.driver == "psycopg-async"

if args.driver == "psycopg2":
    import psycopg2 as drv
    import psycopg2.errors as errors

    def connect(ci, **kw):
        kw.pop("prepare_threshold", None)
        return drv.connect(ci, **kw)
else:
    import psycopg as drv
    import psycopg.errors as errors

    def connect(ci, **kw):
        return drv.connect(ci, **kw)

clientchecks.label = args.driver


async def aq1(conn, sql, params=None):
    cur = conn.cursor()
    await cur.execute(sql, params)
    row = await cur.fetchone()
    await cur.close()
    return row


def asked_host():
    """The host= of --ci: what PQhost must report."""
    for kv in args.ci.split():
        if kv.startswith("host="):
            return kv[5:]
    return None


PROBE = ("select pg_backend_pid(), current_setting('application_name'), "
         "txid_current_if_assigned(), pg_sleep(0.002)::text")


# ---------------------------------------------------------------- many
def many_worker(n):
    """n times connect, query, close; returns a summary (runs in a child)."""
    res = {"ok": 0, "errors": [], "pids": [], "apps": [], "dirty": 0}

    def record(row):
        res["ok"] += 1
        res["pids"].append(row[0])
        res["apps"].append(row[1])
        if row[2] is not None:
            res["dirty"] += 1

    if ASYNC:
        async def run():
            for _ in range(n):
                try:
                    conn = await drv.AsyncConnection.connect(args.ci)
                    try:
                        record(await aq1(conn, PROBE))
                    finally:
                        await conn.close()
                except Exception as e:  # reported, counted
                    res["errors"].append("%s: %s" % (type(e).__name__, e))
        asyncio.run(run())
    else:
        for _ in range(n):
            try:
                conn = connect(args.ci)
                try:
                    record(q1(conn, PROBE))
                finally:
                    conn.close()
            except Exception as e:
                res["errors"].append("%s: %s" % (type(e).__name__, e))
    res["pids"] = sorted(set(res["pids"]))
    res["apps"] = sorted(set(res["apps"]))
    return res


def scenario_many():
    ctx = multiprocessing.get_context("fork")
    t0 = time.monotonic()
    with ctx.Pool(args.procs) as pool:
        results = pool.map(many_worker, [args.connects] * args.procs, chunksize=1)
    el = time.monotonic() - t0
    total = args.procs * args.connects
    good = sum(r["ok"] for r in results)
    errs = [e for r in results for e in r["errors"]]
    pids = set(p for r in results for p in r["pids"])
    apps = set(a for r in results for a in r["apps"])
    dirty = sum(r["dirty"] for r in results)
    print("    %d processes x %d connects in %.1f s, %d backends, errors: %s"
          % (args.procs, args.connects, el, len(pids), errs[:3]), flush=True)
    check(good == total and not errs, "%d of %d connect/query/close succeeded" % (good, total))
    check(apps == {args.app}, "every session has application_name %s (got %s)"
          % (args.app, sorted(apps)))
    check(dirty == 0, "no session started inside someone's transaction (%d did)" % dirty)
    if DROPIN:
        check(len(pids) <= args.cap, "at most %d distinct backends served %d connects (got %d)"
              % (args.cap, total, len(pids)))
    else:
        check(len(pids) > args.cap, "direct: more than %d backends served them (%d): the "
              "cap check above can fail" % (args.cap, len(pids)))


# ---------------------------------------------------------------- fork
def fork_child(conn, w):
    """In the child: try the inherited connection, close it, open our own."""
    rep = {}
    # The default SIGALRM action ends the child: a hang becomes a failure.
    signal.alarm(20)
    if DROPIN:
        t0 = time.monotonic()
        try:
            if ASYNC:
                from psycopg import pq
                r = conn.pgconn.exec_(b"select pg_backend_pid()")
                rep["inherited"] = ("error: " + (conn.pgconn.error_message or b"").decode(errors="replace")
                                    if r.status != pq.ExecStatus.TUPLES_OK else
                                    "USED: got " + r.get_value(0, 0).decode())
            else:
                row = q1(conn, "select pg_backend_pid()")
                rep["inherited"] = "USED: got %s" % (row,)
        except drv.Error as e:
            rep["inherited"] = "error: %s: %s" % (type(e).__name__, str(e).strip())
        except Exception as e:
            rep["inherited"] = "unexpected: %s: %s" % (type(e).__name__, e)
        rep["inherited_s"] = time.monotonic() - t0
        # Closing it here must free memory only, never touch the parent's session.
        try:
            if ASYNC:
                conn.pgconn.finish()
            else:
                conn.close()
            rep["close"] = "ok"
        except Exception as e:
            rep["close"] = "%s: %s" % (type(e).__name__, e)
    try:
        own = connect(args.ci)
        rep["own"] = q1(own, "select pg_backend_pid()")[0]
        own.close()
    except Exception as e:
        rep["own"] = "%s: %s" % (type(e).__name__, e)
    os.write(w, json.dumps(rep).encode())
    os.close(w)


def wait_child(pid, secs):
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


def fork_common(run_child):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        code = 0
        try:
            run_child(w)
        except BaseException as e:
            print("child: %s: %s" % (type(e).__name__, e), file=sys.stderr, flush=True)
            code = 1
        if DROPIN and code == 0:
            # A normal exit: finalizers and the library's own cleanup run in the child.
            sys.stdout.flush()
            sys.exit(0)
        os._exit(code)
    os.close(w)
    status = wait_child(pid, 30)
    data = read_to_end(r)
    check(status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0,
          "the child ends by itself with status 0 (wait status %s)" % status)
    try:
        rep = json.loads(data.decode() or "{}")
    except ValueError:
        rep = {}
    print("    child reported: %s" % rep, flush=True)
    return rep


def scenario_fork():
    if ASYNC:
        async def run():
            conn = await drv.AsyncConnection.connect(args.ci)
            await conn.set_autocommit(True)
            pid0 = (await aq1(conn, "select pg_backend_pid()"))[0]
            rep = fork_common(lambda w: fork_child(conn, w))
            try:
                row = await aq1(conn, "select pg_backend_pid(), txid_current_if_assigned()")
            except Exception as e:
                row = ("%s: %s" % (type(e).__name__, e), None)
            await conn.close()
            return pid0, rep, row
        pid0, rep, row = asyncio.run(run())
    else:
        conn = connect(args.ci)
        conn.autocommit = True
        pid0 = q1(conn, "select pg_backend_pid()")[0]
        rep = fork_common(lambda w: fork_child(conn, w))
        try:
            row = q1(conn, "select pg_backend_pid(), txid_current_if_assigned()")
        except Exception as e:
            row = ("%s: %s" % (type(e).__name__, e), None)
        conn.close()
    if DROPIN:
        inh = rep.get("inherited", "nothing reported")
        check(inh.startswith("error: "), "the child cannot use the inherited connection (%s)" % inh)
        check(rep.get("inherited_s", 99) < 5, "and is told so at once (%.2f s)"
              % rep.get("inherited_s", 99))
        check(rep.get("close") == "ok", "closing it in the child is harmless (%s)" % rep.get("close"))
    else:
        print("    direct: the inherited connection is not touched in the child "
              "(libpq forbids it; the drop-in must make it a clean error)", flush=True)
    own = rep.get("own")
    check(isinstance(own, int) and own != pid0,
          "the child gets its own connection (backend %s, parent's %s)" % (own, pid0))
    check(row[0] == pid0 and row[1] is None,
          "the parent's connection keeps working, same session, no transaction (got %s)" % (row,))


# ---------------------------------------------------------------- cancel
def cancel_methods():
    """conn.cancel(); and psycopg 3's conn.cancel_safe() where it is libpq 17's
    cancel API (PQcancelCreate, PQcancelStart, PQcancelPoll): with libpq >= 17."""
    if args.driver == "psycopg2":
        return ["cancel"]
    if not hasattr(drv, "capabilities"):  # psycopg 3.1 (Debian 12): no cancel_safe()
        check(not hasattr(drv.Connection, "cancel_safe"),
              "psycopg %s has no cancel_safe(): cancel() is its cancel" % drv.__version__)
        return ["cancel"]
    version = drv.pq.version()
    safe = drv.capabilities.has_cancel_safe()
    check(safe == (version >= 170000),
          "cancel_safe() uses libpq 17's cancel API exactly when libpq is >= 17 (libpq %d)"
          % version)
    return ["cancel", "cancel_safe"] if safe else ["cancel"]


def scenario_cancel_with(method):
    took = {}

    def cancel_later(conn):
        time.sleep(0.5)
        t0 = time.monotonic()
        try:
            getattr(conn, method)()
            took["cancel"] = time.monotonic() - t0
        except Exception as e:
            took["cancel_error"] = "%s: %s" % (type(e).__name__, e)

    msg, elapsed = None, None
    if ASYNC:
        async def run():
            conn = await drv.AsyncConnection.connect(args.ci)
            check(conn.info.host == asked_host(), "PQhost reports the host asked for (%s)"
                  % conn.info.host)
            pid0 = (await aq1(conn, "select pg_backend_pid()"))[0]
            await conn.rollback()

            async def canceller():
                await asyncio.sleep(0.5)
                t0 = time.monotonic()
                if method == "cancel":
                    conn.cancel()
                else:
                    await conn.cancel_safe()
                took["cancel"] = time.monotonic() - t0
            task = asyncio.create_task(canceller())
            t0 = time.monotonic()
            try:
                await aq1(conn, "select pg_sleep(10)")
                m = "not cancelled"
            except errors.QueryCanceled as e:
                m = str(e)
            except Exception as e:
                m = "%s: %s" % (type(e).__name__, e)
            el = time.monotonic() - t0
            await task
            await conn.rollback()
            row = await aq1(conn, "select pg_backend_pid(), 1")
            await conn.close()
            return pid0, m, el, row
        pid0, msg, elapsed, row = asyncio.run(run())
    else:
        conn = connect(args.ci)
        check(conn.info.host == asked_host(), "PQhost reports the host asked for (%s)" % conn.info.host)
        pid0 = q1(conn, "select pg_backend_pid()")[0]
        conn.rollback()
        th = threading.Thread(target=cancel_later, args=(conn,))
        th.start()
        t0 = time.monotonic()
        try:
            q1(conn, "select pg_sleep(10)")
            msg = "not cancelled"
        except errors.QueryCanceled as e:
            msg = str(e)
        except Exception as e:
            msg = "%s: %s" % (type(e).__name__, e)
        elapsed = time.monotonic() - t0
        th.join(15)
        conn.rollback()
        row = q1(conn, "select pg_backend_pid(), 1")
        conn.close()
    msg = msg.strip()
    check("cancel" in took and took["cancel"] < 1.0,
          "conn.%s() returns at once (%s)" % (method, took))
    check("canceling statement" in msg, "%s: the query ends with 'canceling statement' (%s)"
          % (method, msg))
    check(elapsed < 2.5, "%s: within 2 s of the cancel (the query ran %.2f s, cancel sent at 0.5 s)"
          % (method, elapsed))
    check(row == (pid0, 1), "%s: the connection is usable afterwards, same session (%s)"
          % (method, row,))


def scenario_cancel():
    for method in cancel_methods():
        scenario_cancel_with(method)


# ---------------------------------------------------------------- hygiene
def scenario_hygiene():
    table = "dt_hyg_%s_%d" % (args.driver.replace("-", "_"), os.getpid())
    if ASYNC:
        async def run():
            c = await drv.AsyncConnection.connect(args.ci, autocommit=True)
            p1 = (await aq1(c, "select pg_backend_pid()"))[0]
            await c.execute("create table %s (x int)" % table)
            await c.execute("create temp table dt_tmp (x int)")
            await c.execute("set work_mem = '7MB'")
            await c.set_autocommit(False)
            await c.execute("insert into %s values (1)" % table)
            xid = (await aq1(c, "select txid_current()"))[0]
            await c.close()                       # closed with a transaction open
            c = await drv.AsyncConnection.connect(args.ci)
            p2, x2 = await aq1(c, "select pg_backend_pid(), txid_current_if_assigned()")
            n2 = (await aq1(c, "select count(*) from %s" % table))[0]
            await c.execute("insert into %s values (2)" % table)
            try:
                await c.execute("select 1 / 0")
                err = "no error"
            except errors.DivisionByZero as e:
                err = str(e).strip()
            await c.close()                       # closed inside an aborted transaction
            c = await drv.AsyncConnection.connect(args.ci)
            p3, x3, tmp, wm = await aq1(c, "select pg_backend_pid(), txid_current_if_assigned(), "
                                           "to_regclass('pg_temp.dt_tmp')::text, "
                                           "current_setting('work_mem')")
            n3 = (await aq1(c, "select count(*) from %s" % table))[0]
            await c.rollback()
            await c.set_autocommit(True)
            await c.execute("drop table %s" % table)
            await c.close()
            return p1, xid, p2, x2, n2, err, p3, x3, tmp, wm, n3
        p1, xid, p2, x2, n2, err, p3, x3, tmp, wm, n3 = asyncio.run(run())
    else:
        c = connect(args.ci)
        c.autocommit = True
        p1 = q1(c, "select pg_backend_pid()")[0]
        cur = c.cursor()
        cur.execute("create table %s (x int)" % table)
        cur.execute("create temp table dt_tmp (x int)")
        cur.execute("set work_mem = '7MB'")
        c.autocommit = False
        cur.execute("insert into %s values (1)" % table)
        xid = q1(c, "select txid_current()")[0]
        c.close()                                 # closed with a transaction open
        c = connect(args.ci)
        p2, x2 = q1(c, "select pg_backend_pid(), txid_current_if_assigned()")
        n2 = q1(c, "select count(*) from %s" % table)[0]
        cur = c.cursor()
        cur.execute("insert into %s values (2)" % table)
        try:
            cur.execute("select 1 / 0")
            err = "no error"
        except errors.DivisionByZero as e:
            err = str(e).strip()
        c.close()                                 # closed inside an aborted transaction
        c = connect(args.ci)
        p3, x3, tmp, wm = q1(c, "select pg_backend_pid(), txid_current_if_assigned(), "
                                "to_regclass('pg_temp.dt_tmp')::text, current_setting('work_mem')")
        n3 = q1(c, "select count(*) from %s" % table)[0]
        c.rollback()
        c.autocommit = True
        c.cursor().execute("drop table %s" % table)
        c.close()
    print("    backends %s, %s, %s" % (p1, p2, p3), flush=True)
    if DROPIN:
        check(p1 == p2 == p3, "the pool of one handed out the same session each time "
              "(backends %s, %s, %s)" % (p1, p2, p3))
    check(xid is not None, "the first lease had a transaction id assigned (%s)" % xid)
    check(x2 is None, "after a lease closed inside an open transaction: no transaction id "
          "assigned on the next (%s)" % x2)
    check(n2 == 0, "and its uncommitted insert is gone (%d rows)" % n2)
    check("division by zero" in err, "a server-side error inside a transaction (%s)" % err)
    check(x3 is None, "after a lease closed inside an aborted transaction: the next one "
          "runs queries, no transaction id (%s)" % x3)
    check(n3 == 0, "and the aborted insert is gone (%d rows)" % n3)
    check(tmp is None, "the temporary table is gone (%s)" % tmp)
    check(wm == "4MB", "the SET work_mem is undone (%s)" % wm)


# ---------------------------------------------------------------- prepared
def prepared_worker(n):
    res = {"ok": 0, "errors": [], "pids": []}
    sqls = ["select %s::int + 1", "select %s::text || 'x'"]
    if args.driver == "psycopg2":
        for i in range(n):
            c = None
            try:
                c = connect(args.ci)
                c.autocommit = True
                cur = c.cursor()
                cur.execute("prepare dt_p1 (int) as select $1 + 1")
                cur.execute("execute dt_p1 (%s)", (i,))
                assert cur.fetchone()[0] == i + 1
                res["pids"].append(q1(c, "select pg_backend_pid()")[0])
                res["ok"] += 1
            except Exception as e:
                res["errors"].append("%s: %s" % (type(e).__name__, str(e).strip()))
            finally:
                if c is not None:
                    c.close()
    elif ASYNC:
        async def run():
            for i in range(n):
                c = None
                try:
                    c = await drv.AsyncConnection.connect(args.ci, prepare_threshold=0)
                    for _ in range(2):
                        assert (await aq1(c, sqls[0], (i,)))[0] == i + 1
                        assert (await aq1(c, sqls[1], (str(i),)))[0] == "%dx" % i
                    res["pids"].append((await aq1(c, "select pg_backend_pid()"))[0])
                    res["ok"] += 1
                except Exception as e:
                    res["errors"].append("%s: %s" % (type(e).__name__, str(e).strip()))
                finally:
                    if c is not None:
                        await c.close()
        asyncio.run(run())
    else:
        for i in range(n):
            c = None
            try:
                c = connect(args.ci, prepare_threshold=0)
                for _ in range(2):
                    assert q1(c, sqls[0], (i,))[0] == i + 1
                    assert q1(c, sqls[1], (str(i),))[0] == "%dx" % i
                res["pids"].append(q1(c, "select pg_backend_pid()")[0])
                res["ok"] += 1
            except Exception as e:
                res["errors"].append("%s: %s" % (type(e).__name__, str(e).strip()))
            finally:
                if c is not None:
                    c.close()
    return res


def scenario_prepared():
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(args.procs) as pool:
        results = pool.map(prepared_worker, [args.connects] * args.procs, chunksize=1)
    total = args.procs * args.connects
    good = sum(r["ok"] for r in results)
    errs = [e for r in results for e in r["errors"]]
    pids = [p for r in results for p in r["pids"]]
    print("    %d processes x %d connects, %d backends, errors: %s"
          % (args.procs, args.connects, len(set(pids)), errs[:3]), flush=True)
    check(good == total and not errs,
          "%d of %d connections prepared and ran the same statements" % (good, total))
    check(not any("already exists" in e for e in errs), "no DuplicatePreparedStatement")
    if DROPIN:
        check(len(set(pids)) <= args.cap,
              "the statements were prepared again on reused sessions (%d backends for %d leases)"
              % (len(set(pids)), total))


{"many": scenario_many, "fork": scenario_fork, "cancel": scenario_cancel,
 "hygiene": scenario_hygiene, "prepared": scenario_prepared}[args.scenario]()
sys.exit(clientchecks.exit_status())
