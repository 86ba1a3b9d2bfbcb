"""txclients.py DRIVER SCENARIO --ci CONNINFO --mode dropin|direct [...]

The client scenarios of tests/dropin/txmode.sh: unmodified psycopg2 and psycopg 3
programs that keep their connections open, on a pool in transaction mode
(pool_mode = transaction). Prints one "ok - ..." or "FAIL - ..." line per check;
exits 1 if any failed.

Scenarios:
  loop      --procs N --txns M: N processes, each with ONE connection for its
            life, all open at the same time (a barrier), each running M
            transactions of several statements: its own rows inserted, read
            back, marked done, committed (every 7th rolled back). Each query
            carries a unique token that the answer must echo; every statement
            of a transaction runs in one server transaction (txid_current());
            no process sees another's uncommitted rows; at the end the table
            holds exactly the committed rows. psycopg 3 runs with
            prepare_threshold=0 (every statement a protocol-level prepared
            statement) and half the processes prepare them in another order, so
            that psycopg's statement names mean different statements on
            different connections.
  async     psycopg 3 (asyncio), prepare_threshold=0: the loop's transactions
            from --procs tasks of ONE thread, each with its own AsyncConnection,
            all open at once, on a pool with fewer sessions: a command that must
            wait for a session must not block the thread (the others' commits
            are what frees one); the same checks as the loop.
  prepared  psycopg 3, prepare_threshold=0, a pool of 2: one connection's
            transactions run on both sessions (another connection holds one of
            them every other time); in each, the statement it just ran is
            prepared on that session (pg_prepared_statements: a named
            statement, once), and no statement error. Then, while another
            connection holds one session: a child process and this one share
            the other, and the statement the child prepared there is this
            process's too (same prepare_time), never prepared again in the
            next transactions; psycopg's own DEALLOCATE (prepared_max = 1)
            breaks nothing; DISCARD ALL from another connection takes it and
            the next use prepares it again; so does a new session
            (forkpoolctl dispose).
  pins      each state-creating command (session SET, LISTEN, SQL PREPARE,
            pg_advisory_lock, CREATE TEMP TABLE, DECLARE ... WITH HOLD, LOAD)
            pins the session: forkpoolctl shows the pin and its reason, the next
            transaction runs on the same backend and sees the state, while
            another connection holds the pool's other session; closed, nothing
            of it reaches the next client. A connection that only runs
            transactions (with SET LOCAL, set_config(..., true),
            pg_advisory_xact_lock, a cursor without hold, RESET ALL) is never pinned and
            holds no lease between transactions.
  rollback  a failed statement in a transaction keeps the session (leased, the
            transaction aborted) until ROLLBACK; then it is released and the
            connection runs the next transaction.
  exhausted --ci-small: a pool of one with a small pool_timeout, two idle
            connections; while one holds the session in an open transaction,
            the other's next query fails with forkpool's timeout as a query
            error, within bounds; that connection then works.
  cancel    conn.cancel() stops the statement of the session that runs the
            transaction now (not the one of connect time), and nothing of another
            connection's transaction.
  fork      a forked child with an inherited connection: idle, it may run a
            transaction on a session of its own (or get a clean error); inside a
            transaction, it gets an error and the parent's transaction goes on.
  restart   --restart-cmd CMD: connections idle, PostgreSQL restarted: the next
            transaction on each works or fails with a clear error, the one
            after works, on the same connection object.
"""
import argparse
import json
import multiprocessing
import os
import queue
import secrets
import subprocess
import sys
import time

import clientchecks
from clientchecks import check, ok, q1

ap = argparse.ArgumentParser()
ap.add_argument("driver", choices=["psycopg2", "psycopg"])
ap.add_argument("scenario",
                choices=["loop", "async", "prepared", "pins", "rollback", "exhausted",
                         "cancel", "fork", "restart"])
ap.add_argument("--ci", required=True)
ap.add_argument("--ci-small", default=None)
ap.add_argument("--direct-ci", required=True, help="straight to the server, never a lease")
ap.add_argument("--mode", required=True, choices=["dropin", "direct"])
ap.add_argument("--pool", default="main")
ap.add_argument("--pool-small", default="small")
ap.add_argument("--pool-timeout", type=float, default=1.0)
ap.add_argument("--ctl", default=None, help="forkpoolctl")
ap.add_argument("--socket", default=None, help="forkpoold's socket")
ap.add_argument("--procs", type=int, default=32)
ap.add_argument("--txns", type=int, default=30)
ap.add_argument("--table", default="dt_tx")
ap.add_argument("--restart-cmd", default=None)
args = ap.parse_args()
DROPIN = args.mode == "dropin"
PG3 = args.driver == "psycopg"

if PG3:
    import psycopg as drv
    import psycopg.errors as errors

    def connect(ci):
        return drv.connect(ci, prepare_threshold=0)

    def tx_status(conn):
        return conn.info.transaction_status.name          # IDLE, INTRANS, INERROR, ...
else:
    import psycopg2 as drv
    import psycopg2.errors as errors
    import psycopg2.extensions as ext

    def connect(ci):
        return drv.connect(ci)

    def tx_status(conn):
        return {ext.TRANSACTION_STATUS_IDLE: "IDLE", ext.TRANSACTION_STATUS_INTRANS: "INTRANS",
                ext.TRANSACTION_STATUS_INERROR: "INERROR",
                ext.TRANSACTION_STATUS_ACTIVE: "ACTIVE"}.get(conn.get_transaction_status(),
                                                               "UNKNOWN")

clientchecks.label = args.driver


def exc_text(e):
    return "%s: %s" % (type(e).__name__, " | ".join(str(e).strip().splitlines()))


def run_committed(conn, sql, n):
    """The first value of sql run with (n,) and committed, or the error's text (rolled back)."""
    try:
        v = conn.execute(sql, (n,)).fetchone()[0]
        conn.commit()
    except drv.Error as e:
        v = exc_text(e)
        conn.rollback()
    return v


def direct():
    """A connection straight to the server (never a lease), autocommit."""
    c = drv.connect(args.direct_ci)
    c.autocommit = True
    return c


def token(tag):
    return "%d-%s-%s" % (os.getpid(), tag, secrets.token_hex(6))


# ---------------------------------------------------------------- forkpoolctl
def ctl_env():
    return {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "LD_LIBRARY_PATH")}


def status_pool(pool):
    """The pool's object of forkpoolctl status --json."""
    out = subprocess.run([args.ctl, "--socket", args.socket, "status", "--json"],
                         env=ctl_env(), check=True, capture_output=True, text=True).stdout
    for p in json.loads(out)["pools"]:
        if p["name"] == pool:
            return p
    raise RuntimeError("forkpoolctl status shows no pool %s" % pool)


def status_text():
    return subprocess.run([args.ctl, "--socket", args.socket, "status"], env=ctl_env(),
                          check=True, capture_output=True, text=True).stdout


def my_slots(pool):
    """The slots of the pool held by this process."""
    return [s for s in status_pool(pool).get("slots", [])
            if s.get("holder_pid") == os.getpid()]


def pin_text(slot):
    """The slot's pin reason in forkpoolctl status --json, '' if it is not pinned."""
    return slot.get("pin_reason") or ""


# ---------------------------------------------------------------- loop
def loop_queries(me):
    """The statements of one transaction, in an order that depends on the process."""
    t = args.table
    own = ("select %%s::text, pg_backend_pid(), txid_current(), "
           "count(*) filter (where state = 'open'), count(*) filter (where state = 'done') "
           "from %s where proc = %%s" % t)
    others = ("select %%s::text, pg_backend_pid(), txid_current(), count(*) "
              "from %s where proc <> %%s and state = 'open'" % t)
    reads = [("own", own), ("others", others)]
    if me % 2:
        reads.reverse()
    return {
        "first": "select %s::text, pg_backend_pid(), txid_current()",
        "insert": "insert into %s (proc, seq, token, state) values (%%s, %%s, %%s, 'open') "
                  "returning token, pg_backend_pid(), txid_current()" % t,
        "reads": reads,
        "done": "update %s set state = 'done' where proc = %%s and seq = %%s and state = 'open' "
                "returning %%s::text, pg_backend_pid(), txid_current()" % t,
    }


def loop_steps(me, seq, committed, Q, res):
    """One transaction, as a generator of steps for a driver's runner (run_txn,
    arun_txn): yields ("q", SQL, PARAMS) and receives the rows, or yields
    ("commit",) / ("rollback",). Returns True if it committed. Records violations
    in res."""
    def bad(what):
        if len(res["violations"]) < 5:
            res["violations"].append("proc %d txn %d: %s" % (me, seq, what))
        res["nviolations"] += 1

    tok = token("%d-first" % seq)
    echo, pid, xid = (yield ("q", Q["first"], (tok,)))[0]
    if echo != tok:
        bad("first query answered %r, not its token %r" % (echo, tok))
    res["pids"].add(pid)
    tok = token("%d-row" % seq)
    echo, p, x = (yield ("q", Q["insert"], (me, seq, tok)))[0]
    if (echo, p, x) != (tok, pid, xid):
        bad("insert answered %r on backend %s xid %s, not %r on %s xid %s"
            % (echo, p, x, tok, pid, xid))
    for kind, sql in Q["reads"]:
        tok = token("%d-%s" % (seq, kind))
        row = (yield ("q", sql, (tok, me)))[0]
        if (row[0], row[1], row[2]) != (tok, pid, xid):
            bad("%s read answered %r on backend %s xid %s, not %r on %s xid %s"
                % (kind, row[0], row[1], row[2], tok, pid, xid))
        if kind == "own" and (row[3], row[4]) != (1, committed):
            bad("sees %d open and %d done rows of its own, not 1 and %d"
                % (row[3], row[4], committed))
        if kind == "others" and row[3] != 0:
            bad("sees %d uncommitted rows of other processes" % row[3])
    if seq % 7 == 3:
        yield ("rollback",)
        return False
    tok = token("%d-done" % seq)
    rows = yield ("q", Q["done"], (me, seq, tok))
    if rows != [(tok, pid, xid)]:
        bad("update answered %r, not one row %r on %s xid %s" % (rows, tok, pid, xid))
    yield ("commit",)
    return True


def run_txn(conn, steps):
    """Runs loop_steps on a blocking connection; returns what it returns."""
    cur = conn.cursor()
    step, val = next(steps), None
    while True:
        if step[0] == "q":
            cur.execute(step[1], step[2])
            val = [tuple(r) for r in cur.fetchall()]
        elif step[0] == "commit":
            conn.commit()
        else:
            conn.rollback()
        try:
            step = steps.send(val)
        except StopIteration as e:
            return e.value


async def arun_txn(conn, steps):
    """Runs loop_steps on a psycopg 3 AsyncConnection; returns what it returns."""
    cur = conn.cursor()
    step, val = next(steps), None
    while True:
        if step[0] == "q":
            await cur.execute(step[1], step[2])
            val = [tuple(r) for r in await cur.fetchall()]
        elif step[0] == "commit":
            await conn.commit()
        else:
            await conn.rollback()
        try:
            step = steps.send(val)
        except StopIteration as e:
            return e.value


def loop_txn(conn, me, seq, committed, Q, res):
    """One transaction on a blocking connection; returns True if it committed."""
    return run_txn(conn, loop_steps(me, seq, committed, Q, res))


def loop_worker(me, barrier):
    res = {"me": me, "pid": os.getpid(), "committed": 0, "rolled_back": 0, "errors": [],
           "pids": set(), "violations": [], "nviolations": 0, "barrier": False}
    conn = None
    Q = loop_queries(me)
    try:
        conn = connect(args.ci)
        committed = 0
        seq = 0
        if loop_txn(conn, me, seq, committed, Q, res):
            committed += 1
        try:
            barrier.wait(timeout=120)
            res["barrier"] = True
        except Exception as e:
            res["errors"].append("barrier: %s" % exc_text(e))
        for seq in range(1, args.txns):
            try:
                if loop_txn(conn, me, seq, committed, Q, res):
                    committed += 1
                else:
                    res["rolled_back"] += 1
            except Exception as e:
                res["errors"].append("txn %d: %s" % (seq, exc_text(e)))
                if len(res["errors"]) > 5:
                    break
                try:
                    conn.rollback()
                except Exception:
                    pass
        res["committed"] = committed
    except Exception as e:
        res["errors"].append(exc_text(e))
    finally:
        if conn is not None:
            conn.close()
    res["pids"] = sorted(res["pids"])
    return res


def loop_table():
    """A direct connection, with the loop's table created."""
    d = direct()
    d.cursor().execute("create table %s (proc int not null, seq int not null, "
                       "token text primary key, state text not null, unique (proc, seq))"
                       % args.table)
    return d


def scenario_loop():
    d = loop_table()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(args.procs)
    procs, q = [], ctx.Queue()

    def run(me):
        q.put(loop_worker(me, barrier))

    for me in range(args.procs):
        p = ctx.Process(target=run, args=(me,))
        p.start()
        procs.append(p)
    results = []
    deadline = time.monotonic() + 400
    while len(results) < len(procs) and time.monotonic() < deadline:
        try:
            results.append(q.get(timeout=1))
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and q.empty():
                break
    for p in procs:
        p.join(timeout=5)
    if check(len(results) == args.procs, "all %d processes reported (%d did)"
             % (args.procs, len(results))):
        loop_report(results, d, "processes")
    d.cursor().execute("drop table %s" % args.table)
    d.close()


def loop_report(results, d, who):
    """The checks of the loop's results (one per process or task: who)."""
    results.sort(key=lambda r: r["me"])
    errs = [e for r in results for e in r["errors"]]
    # The cause first: a connect that failed leaves the others waiting at the barrier.
    errs.sort(key=lambda e: e.startswith("barrier"))
    viol = [v for r in results for v in r["violations"]]
    nviol = sum(r["nviolations"] for r in results)
    expect_rb = len([s for s in range(1, args.txns) if s % 7 == 3])
    expect_commit = args.txns - expect_rb
    backends = sorted({p for r in results for p in r["pids"]})
    moved = sum(1 for r in results if len(r["pids"]) > 1)
    print("    %d %s x %d transactions; %d backends %s; %d %s ran on more than one backend; "
          "errors: %s" % (len(results), who, args.txns, len(backends), backends[:8], moved, who,
                          errs[:3]), flush=True)
    check(all(r["barrier"] for r in results),
          "all %d %s had their connection open and a transaction done at the same time (%d "
          "reached the barrier)" % (len(results), who, sum(r["barrier"] for r in results)))
    check(not errs, "no transaction failed (%d errors: %s)" % (len(errs), errs[:3]))
    check(all(r["committed"] == expect_commit and r["rolled_back"] == expect_rb
              for r in results),
          "every one of the %s committed its %d transactions and rolled back %d (least "
          "committed: %d)" % (who, expect_commit, expect_rb, min(r["committed"] for r in results)))
    check(nviol == 0, "every answer carried its query's token, every statement of a transaction "
          "ran in one server transaction, none of the %s saw another's uncommitted rows (%d "
          "violations: %s)" % (who, nviol, viol[:3]))
    cur = d.cursor()
    cur.execute("select proc, count(*) filter (where state = 'done'), "
                "count(*) filter (where state <> 'done') from %s group by proc order by proc"
                % args.table)
    rows = {r[0]: (r[1], r[2]) for r in cur.fetchall()}
    want = {r["me"]: (r["committed"], 0) for r in results}
    check(rows == want, "the table holds exactly the committed rows of all %s, nothing "
          "rolled back or left open (%s)" % (who, "as reported" if rows == want else
                                             sorted(set(rows.items()) ^ set(want.items()))[:4]))
    if DROPIN:
        check(moved > 0, "transactions of one connection ran on different sessions "
              "(%d of %d %s)" % (moved, len(results), who))


# ---------------------------------------------------------------- async
def scenario_async():
    """--procs connections in ONE thread (asyncio tasks) on a smaller pool."""
    import asyncio

    if not PG3:
        sys.exit("the async scenario is psycopg 3's")
    d = loop_table()
    barrier = asyncio.Barrier(args.procs)

    async def task(me):
        res = {"me": me, "committed": 0, "rolled_back": 0, "errors": [], "pids": set(),
               "violations": [], "nviolations": 0, "barrier": False}
        Q = loop_queries(me)
        conn = None
        try:
            conn = await drv.AsyncConnection.connect(args.ci, prepare_threshold=0)
            for seq in range(args.txns):
                try:
                    if await arun_txn(conn, loop_steps(me, seq, res["committed"], Q, res)):
                        res["committed"] += 1
                    else:
                        res["rolled_back"] += 1
                except Exception as e:
                    res["errors"].append("txn %d: %s" % (seq, exc_text(e)))
                    if len(res["errors"]) > 5:
                        break
                    await conn.rollback()
                if seq == 0:
                    try:
                        await asyncio.wait_for(barrier.wait(), 120)
                        res["barrier"] = True
                    except Exception as e:
                        res["errors"].append("barrier: %s" % exc_text(e))
        except Exception as e:
            res["errors"].append(exc_text(e))
        finally:
            if conn is not None:
                await conn.close()
        return res

    async def run():
        return await asyncio.gather(*(task(me) for me in range(args.procs)))

    results = asyncio.run(run())
    loop_report(results, d, "tasks")
    d.cursor().execute("drop table %s" % args.table)
    d.close()


# ---------------------------------------------------------------- prepared
def scenario_prepared():
    if not PG3:
        sys.exit("the prepared scenario is psycopg 3's")
    a = connect(args.ci)
    b = drv.connect(args.ci)                      # holds a session every other time
    sql = "select %s::int + 1, pg_backend_pid()"
    text = "select $1::int + 1, pg_backend_pid()"
    seen, errs = [], []
    for i in range(8):
        try:
            if i % 2:
                b.execute("select 1")             # a transaction is open: b holds a session
            row = a.execute(sql, (i,)).fetchone()
            n = a.execute("select count(*) from pg_prepared_statements where statement = %s",
                          (text,)).fetchone()[0]
            seen.append((row[1], n))
            if row[0] != i + 1:
                errs.append("transaction %d: %s + 1 = %s" % (i, i, row[0]))
            a.commit()
            b.commit()
        except drv.Error as e:
            errs.append("transaction %d: %s" % (i, exc_text(e)))
            a.rollback()
            b.rollback()
    a.close()
    b.close()
    print("    (backend, times prepared there): %s" % seen, flush=True)
    check(not errs, "8 transactions ran the prepared statement (%s)" % errs[:3])
    if DROPIN:
        check(len({p for p, _ in seen}) >= 2, "they ran on both of the pool's sessions (%s)"
              % sorted({p for p, _ in seen}))
    check(len(seen) == 8 and all(n == 1 for _, n in seen),
          "on each session the statement is prepared (a named statement), exactly once (%s)"
          % [n for _, n in seen])
    prepared_across_processes()


def stmt_on_session(conn, text):
    """(backend, times prepared, prepare_time, executions) of the statement text on the
    session that runs conn's transaction; the transaction is committed."""
    row = q1(conn, "select pg_backend_pid(), count(*), max(prepare_time)::text, "
             "coalesce(sum(generic_plans + custom_plans), 0)::int "
             "from pg_prepared_statements where statement = %s", (text,))
    conn.commit()
    return tuple(row)


def in_child(fn):
    """fn() run in a forked child process; returns the text it returned, or "error " and
    the text of the exception it raised."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            out = fn()
        except Exception as e:
            out = "error " + exc_text(e)
        os.write(w, out.encode())
        os._exit(0)
    os.close(w)
    out = clientchecks.read_to_end(r)
    os.waitpid(pid, 0)
    return out.decode()


def prepared_across_processes():
    """While another connection holds one of the pool's two sessions, a child process and
    this one share the other: what the child prepared is this process's statement too,
    kept from one transaction to the next; psycopg's DEALLOCATE (its cache evicting)
    costs the session nothing; DISCARD ALL from another connection and a new session
    (forkpoolctl dispose) take the statement, and it is prepared again at its next use."""
    sql, text = "select %s::int * 5", "select $1::int * 5"
    a = connect(args.ci)
    b = drv.connect(args.ci)
    b.execute("select 1")                         # holds one session until its commit

    def child_work():
        c = connect(args.ci)
        v = c.execute(sql, (1,)).fetchone()[0]
        c.commit()
        info = stmt_on_session(c, text)
        c.close()
        return repr((v,) + info)

    got = in_child(child_work)
    child = eval(got) if got.startswith("(") else None
    check(child is not None and child[0] == 5, "a child process ran the statement (%s)" % got)
    v = a.execute(sql, (2,)).fetchone()[0]
    a.commit()
    mine = stmt_on_session(a, text)
    check(v == 10 and mine[1] == 1, "this process ran it, prepared once on its session (%s)"
          % (mine,))
    if DROPIN and child:
        check(mine[0] == child[1] and mine[2] == child[3] and mine[3] >= 2,
              "two processes, one session: the child's statement, not prepared again "
              "(child %s, parent %s)" % (child[1:], mine))
    for i in range(3):
        a.execute(sql, (i,)).fetchone()
        a.commit()
    later = stmt_on_session(a, text)
    check(later[1] == 1 and later[2] == mine[2] and later[3] >= mine[3] + 3,
          "the next transactions on the session run it by its name, never prepared again "
          "(%s, then %s)" % (mine, later))

    # psycopg's cache evicts (DEALLOCATE name): the statement keeps working.
    a.prepared_max = 1
    errs = []
    for i in range(4):
        try:
            for q in ("select %s::int * 7", sql, "select %s::int * 11"):
                a.execute(q, (i,)).fetchone()
            a.commit()
        except drv.Error as e:
            errs.append(exc_text(e))
            a.rollback()
    after = stmt_on_session(a, text)
    check(not errs and after[1] == 1,
          "with prepared_max = 1 (psycopg sends DEALLOCATE as it evicts) every statement "
          "works and stays prepared once (%s; %s)" % (errs[:2], after))

    # DISCARD ALL from another connection on the same session: prepared again at next use.
    if DROPIN:
        d = drv.connect(args.ci, autocommit=True)
        d.execute("discard all")
        d.close()
        gone = stmt_on_session(a, text)
        check(gone[1] == 0, "DISCARD ALL on the session took the statement (%s)" % (gone,))
    v = run_committed(a, sql, 4)
    again = stmt_on_session(a, text)
    check(v == 20 and again[1] == 1, "after DISCARD ALL the statement is prepared again and "
          "runs (%s; %s)" % (v, again))

    # A new session (forkpoolctl dispose closes the pool's connections).
    b.commit()
    if DROPIN:
        subprocess.run([args.ctl, "--socket", args.socket, "dispose", args.pool], env=ctl_env(),
                       check=True, capture_output=True)
    v = run_committed(a, sql, 5)
    fresh = stmt_on_session(a, text)
    check(v == 25 and fresh[1] == 1 and (fresh[0] != again[0] or not DROPIN),
          "on a new session the statement is prepared again and runs (%s; %s, was backend %s)"
          % (v, fresh, again[0]))
    a.close()
    b.close()
    expect_released(args.pool, "the prepared scenario's connections")


# ---------------------------------------------------------------- pins
def released_slots(pool):
    """This process's slots once the releases it sent were handled: a release needs no
    reply, so forkpoold may show it a moment later (up to 3 s here)."""
    deadline = time.monotonic() + 3
    held = my_slots(pool)
    while held and time.monotonic() < deadline:
        time.sleep(0.05)
        held = my_slots(pool)
    return held


def pinned_slots(pool):
    """This process's slots once its pin was handled: a pin, like a release, needs no reply,
    so forkpoold may show it a moment later (up to 3 s here)."""
    deadline = time.monotonic() + 3
    held = my_slots(pool)
    while not (held and all(pin_text(s) for s in held)) and time.monotonic() < deadline:
        time.sleep(0.05)
        held = my_slots(pool)
    return held


def expect_released(pool, what):
    """In transaction mode an idle connection holds no lease: no slot held by this process."""
    if not DROPIN:
        return True
    held = released_slots(pool)
    return check(not held, "%s: no session leased while idle (%s)" % (what, held))


PINS = [
    # (name, setup statements, words one of which the pin reason names,
    #  check run in the next transaction: (conn, state, direct conn) -> (good, seen))
    ("session SET", ["set work_mem = '3MB'"], ["set"],
     lambda c, st, d: (lambda v: (v == "3MB", v))(q1(c, "show work_mem")[0])),
    ("LISTEN", ["listen dt_chan"], ["listen"], None),
    ("SQL PREPARE", ["prepare dt_p (int) as select $1 + 1"], ["prepare"],
     lambda c, st, d: (lambda v: (v == 42, v))(q1(c, "execute dt_p (41)")[0])),
    ("pg_advisory_lock", ["select pg_advisory_lock(4242)"], ["advisory", "lock"], None),
    ("CREATE TEMP TABLE", ["create temp table dt_tmp as select 7 as x"], ["temp"],
     lambda c, st, d: (lambda v: (v == 7, v))(q1(c, "select x from dt_tmp")[0])),
    ("DECLARE ... WITH HOLD", ["declare dt_cur cursor with hold for select generate_series(1, 5)"],
     ["hold", "cursor"],
     lambda c, st, d: (lambda v: (v == [(1,), (2,)], v))(fetch_all(c, "fetch 2 from dt_cur"))),
    ("LOAD", ["load 'auto_explain'"], ["load"],
     lambda c, st, d: (lambda v: (v == "-1", v))(q1(c, "show auto_explain.log_min_duration")[0])),
]


def fetch_all(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    rows = [tuple(r) for r in cur.fetchall()]
    cur.close()
    return rows


def check_listen(c, backend, d):
    d.cursor().execute("notify dt_chan, 'hello-%d'" % backend)
    chans = [r[0] for r in fetch_all(c, "select pg_listening_channels()")]
    c.commit()
    deadline = time.monotonic() + 10
    got = []
    while time.monotonic() < deadline:
        if PG3:
            got = [n.payload for n in c.notifies(timeout=0.5, stop_after=1)]
        else:
            c.poll()
            got = [n.payload for n in c.notifies]
        if got:
            break
        time.sleep(0.05)
    want = "hello-%d" % backend
    return chans == ["dt_chan"] and want in got, "channels %s, notifications %s" % (chans, got)


def check_advisory(c, backend, d):
    cur = d.cursor()
    cur.execute("select count(*) from pg_locks where locktype = 'advisory' and objid = 4242 "
                "and granted and pid = %s", (backend,))
    held = cur.fetchone()[0]
    unlocked = q1(c, "select pg_advisory_unlock(4242)")[0]
    return held == 1 and unlocked is True, "held by the backend: %d, unlocked: %s" % (held, unlocked)


def scenario_pins():
    d = direct()
    for name, setup, words, state_check in PINS:
        if name == "LISTEN":
            state_check = check_listen
        elif name == "pg_advisory_lock":
            state_check = check_advisory
        c = connect(args.ci)
        b0 = q1(c, "select pg_backend_pid()")[0]
        c.commit()
        expect_released(args.pool, "%s: before it" % name)
        cur = c.cursor()
        for sql in setup:
            cur.execute(sql)
        b1 = q1(c, "select pg_backend_pid()")[0]
        c.commit()
        if DROPIN:
            held = pinned_slots(args.pool)
            pins = [pin_text(s) for s in held]
            check(len(held) == 1 and pins[0] != "",
                  "%s: forkpoolctl status shows this process's session pinned (%s)"
                  % (name, held))
            reason = " ".join(pins).lower()
            check(any(w in reason for w in words),
                  "%s: the pin's reason names it (%r)" % (name, " ".join(pins)))
            text = status_text()
            line = [ln for ln in text.splitlines()
                    if "pin" in ln.lower() and str(os.getpid()) in ln.split()]
            check(bool(line), "%s: forkpoolctl status (text) shows the pin on this process's "
                  "slot (%s)" % (name, line[:2]))
        # Another connection takes the pool's other session for a transaction:
        # without the pin, it could take ours.
        other = connect(args.ci)
        ob = q1(other, "select pg_backend_pid()")[0]
        b2 = q1(c, "select pg_backend_pid()")[0]
        good, seen = state_check(c, b1, d)
        if tx_status(c) != "IDLE":
            c.rollback()
        other.rollback()
        if DROPIN:
            check(b2 == b1 and ob != b1,
                  "%s: the next transaction ran on the pinned backend %s (got %s; the other "
                  "connection got %s; before the pin %s)" % (name, b1, b2, ob, b0))
        check(good, "%s: the next transaction sees the state (%s)" % (name, seen))
        c.close()
        other.close()
        if DROPIN:
            check(not released_slots(args.pool), "%s: closed, the connection holds no session"
                  % name)
    # Nothing of it reaches the next clients (on each of the pool's sessions).
    a, b = connect(args.ci), connect(args.ci)
    for c in (a, b):
        row = q1(c, "select pg_backend_pid(), current_setting('work_mem'), "
                    "to_regclass('pg_temp.dt_tmp')::text, "
                    "(select count(*) from pg_prepared_statements where name = 'dt_p'), "
                    "(select count(*) from pg_listening_channels()), "
                    "(select count(*) from pg_cursors), "
                    "(select count(*) from pg_locks where locktype = 'advisory' "
                    " and pid = pg_backend_pid())")
        check(row[1:] == ("4MB", None, 0, 0, 0, 0),
              "a new connection on backend %s finds none of the pinned sessions' state "
              "(work_mem, temp table, statement, channels, cursors, advisory locks: %s)"
              % (row[0], row[1:]))
    a.close()
    b.close()
    # Transactions that create no session state never pin.
    c = connect(args.ci)
    plain = [
        ["select 1"],
        ["set local work_mem = '5MB'", "show work_mem"],
        ["select set_config('work_mem', '6MB', true)"],
        ["select pg_advisory_xact_lock(77)"],
        ["declare dt_nohold cursor for select generate_series(1, 3)", "fetch 1 from dt_nohold"],
        ["select count(*) from pg_class"],
        ["reset all"],                # what PHP's pg_pconnect sends on every reuse
    ]
    for stmts in plain:
        cur = c.cursor()
        for sql in stmts:
            cur.execute(sql)
        c.commit()
        if DROPIN:
            held = released_slots(args.pool)
            check(not held, "never pinned: after %r the connection holds no session (%s)"
                  % (stmts[0], held))
    wm = q1(c, "show work_mem")[0]
    c.commit()
    check(wm == "4MB", "never pinned: SET LOCAL and set_config(..., true) ended with their "
          "transactions (work_mem %s)" % wm)
    c.close()
    d.close()


# ---------------------------------------------------------------- errors
def scenario_rollback():
    c = connect(args.ci)
    b = q1(c, "select pg_backend_pid()")[0]
    try:
        q1(c, "select 1 / 0")
        err = "no error"
    except errors.DivisionByZero as e:
        err = exc_text(e)
    check("division by zero" in err, "a failed statement in a transaction (%s)" % err)
    check(tx_status(c) == "INERROR", "the transaction is aborted (%s)" % tx_status(c))
    if DROPIN:
        held = my_slots(args.pool)
        check(len(held) == 1 and held[0].get("backend_pid") == b,
              "the aborted transaction keeps its session (backend %s) leased (%s)" % (b, held))
    try:
        q1(c, "select 1")
        err = "no error"
    except errors.InFailedSqlTransaction as e:
        err = exc_text(e)
    check("aborted" in err, "the next statement is refused by the server (%s)" % err)
    c.rollback()
    check(tx_status(c) == "IDLE", "ROLLBACK: idle (%s)" % tx_status(c))
    expect_released(args.pool, "after ROLLBACK")
    tok = token("after")
    row = q1(c, "select %s::text, txid_current_if_assigned()", (tok,))
    c.commit()
    check(row == (tok, None), "the connection runs the next transaction (%s)" % (row,))
    expect_released(args.pool, "after the next transaction")
    c.close()


def scenario_exhausted():
    # Both connected while the pool's only session is free; then one holds it.
    holder = connect(args.ci_small)
    waiter = connect(args.ci_small)
    hb = q1(holder, "select pg_backend_pid()")[0]       # a transaction is open: leased
    if DROPIN:
        t0 = time.monotonic()
        try:
            q1(waiter, "select 1")
            err = "no error"
            raw = ""
        except drv.Error as e:
            err, raw = exc_text(e), str(e).strip()
        took = time.monotonic() - t0
        print("    the query waited %.2f s: %s" % (took, err), flush=True)
        check("forkpool" in err, "the pool's timeout reaches the app as a query error naming "
              "forkpool (%s)" % err)
        check(raw != "" and "\n" not in raw, "its message is one line (%r)" % raw)
        check(args.pool_timeout * 0.8 <= took <= args.pool_timeout + 20,
              "after about pool_timeout %.1f s, never a hang (%.2f s)" % (args.pool_timeout, took))
        closed = waiter.closed
        check(not closed, "the connection is not closed by the error (closed=%s)" % closed)
        if not closed:
            try:
                waiter.rollback()
            except drv.Error:
                pass
        n = status_pool(args.pool_small)["counters"]["timeouts"]
        check(n >= 1, "forkpoolctl counts the timeout (%d)" % n)
    holder.commit()
    tok = token("later")
    try:
        row = q1(waiter, "select %s::text, pg_backend_pid()", (tok,))
        waiter.commit()
    except drv.Error as e:
        row = exc_text(e)
    check(isinstance(row, tuple) and row[0] == tok,
          "once the session is free the same connection runs a transaction (%s; the holder "
          "had backend %s)" % (row, hb))
    waiter.close()
    holder.close()


def scenario_cancel():
    """conn.cancel() cancels the session that runs the connection's transaction now,
    not the one it had at connect, and nothing of the other connection."""
    import threading

    c = connect(args.ci)
    at_connect = q1(c, "select pg_backend_pid()")[0]
    c.commit()
    o = connect(args.ci)
    ob = q1(o, "select pg_backend_pid()")[0]          # o holds a session in a transaction
    o.cursor().execute("create temp table if not exists dt_o as select 1 as x")
    cb = q1(c, "select pg_backend_pid()")[0]          # c's transaction on the other session
    timer = threading.Timer(0.5, c.cancel)
    t0 = time.monotonic()
    timer.start()
    try:
        q1(c, "select pg_sleep(10)")
        err = "no error"
    except errors.QueryCanceled as e:
        err = exc_text(e)
    except drv.Error as e:
        err = "wrong error: " + exc_text(e)
    took = time.monotonic() - t0
    timer.join()
    print("    backends: c at connect %s, o %s, c's transaction %s" % (at_connect, ob, cb),
          flush=True)
    check("canceling statement" in err and took < 8,
          "cancel() stops the transaction's statement (%s, after %.1f s)" % (err, took))
    c.rollback()
    try:
        row = q1(o, "select x, pg_backend_pid() from dt_o")
        o.rollback()
    except drv.Error as e:
        row = exc_text(e)
    check(row == (1, ob), "the other connection's transaction was not touched (%s)" % (row,))
    tok = token("after-cancel")
    row = q1(c, "select %s::text", (tok,))
    c.commit()
    check(row == (tok,), "the cancelled connection runs the next transaction (%s)" % (row,))
    c.close()
    o.close()


def scenario_fork():
    """A child of a process with a transaction-mode connection: inherited while idle,
    the child may use it on a session of its own or get a clean error; inherited inside
    a transaction, it must never reach the parent's session; the parent's connection is
    unharmed either way."""
    if not DROPIN:
        print("    direct: a child must not use an inherited libpq connection at all (it shares "
              "the parent's socket); nothing to check", flush=True)
        return
    c = connect(args.ci)
    q1(c, "select pg_backend_pid()")
    c.commit()

    def child(conn):
        return in_child(lambda: "worked %s %s"
                        % q1(conn, "select pg_backend_pid(), txid_current_if_assigned()"))

    idle = child(c)
    if idle.startswith("worked"):
        ok("idle at fork: the child ran a transaction on a session of its own (%s)" % idle)
    else:
        check("forkpool" in idle, "idle at fork: the child gets a clean error (%s)" % idle)
    tok = token("parent")
    row = q1(c, "select %s::text, pg_backend_pid()", (tok,))
    c.commit()
    check(row[0] == tok, "the parent's connection works after the child (%s)" % (row,))
    # Inside a transaction at fork.
    c2 = connect(args.ci)
    b2, x2 = q1(c2, "select pg_backend_pid(), txid_current()")
    inside = child(c2)
    check(not inside.startswith("worked") and inside != "",
          "inside a transaction at fork: the child gets an error, never the parent's "
          "session (%s)" % inside)
    try:
        row = q1(c2, "select pg_backend_pid(), txid_current()")
        c2.commit()
    except drv.Error as e:
        row = exc_text(e)
    check(row == (b2, x2), "the parent's transaction goes on, on its session (%s; it had %s)"
          % (row, (b2, x2)))
    c2.close()
    c.close()


def scenario_restart():
    conns = [connect(args.ci) for _ in range(3)]
    before = []
    for c in conns:
        before.append(q1(c, "select pg_backend_pid()")[0])
        c.commit()
    expect_released(args.pool, "before the restart")
    print("    backends before the restart: %s" % before, flush=True)
    r = subprocess.run(args.restart_cmd, shell=True, env=ctl_env(), capture_output=True,
                       text=True)
    if not check(r.returncode == 0, "PostgreSQL restarted (%s)" % (r.stderr.strip()[-300:])):
        return
    for i, c in enumerate(conns):
        tok = token("first%d" % i)
        t0 = time.monotonic()
        try:
            row = q1(c, "select %s::text, pg_backend_pid()", (tok,))
            c.commit()
            first = "worked" if row[0] == tok else "answered %r" % (row,)
        except drv.Error as e:
            first = exc_text(e)
            try:
                c.rollback()
            except drv.Error:
                pass
        took = time.monotonic() - t0
        check(first == "worked" or first.split(": ", 1)[-1].strip() != "",
              "connection %d: the first transaction after the restart works or fails with a "
              "clear error in %.1f s (%s)" % (i, took, first))
        if not DROPIN and c.closed:
            print("    direct: connection %d is closed by the restart; a new one" % i, flush=True)
            c = conns[i] = connect(args.ci)
        tok = token("second%d" % i)
        try:
            row = q1(c, "select %s::text, pg_backend_pid()", (tok,))
            c.commit()
            second = "worked" if row[0] == tok else "answered %r" % (row,)
        except drv.Error as e:
            second = exc_text(e)
        check(second == "worked", "connection %d: the one after works, on the same connection "
              "(%s; closed=%s)" % (i, second, c.closed))
    for c in conns:
        c.close()
    expect_released(args.pool, "after closing")


{"loop": scenario_loop, "async": scenario_async, "prepared": scenario_prepared,
 "pins": scenario_pins, "rollback": scenario_rollback, "exhausted": scenario_exhausted,
 "cancel": scenario_cancel, "fork": scenario_fork, "restart": scenario_restart}[args.scenario]()
sys.exit(clientchecks.exit_status())
