#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Per-request cost of a Flask route doing 5 queries under gunicorn (16 sync workers),
on PostgreSQL through psycopg 3, in four configurations:

  queue      SQLAlchemy's QueuePool in each worker, direct connections
  null       NullPool, a direct connection per request
  forkpool   ForkPool: a lease per request from forkpoold (pool_size --pool)
  pgbouncer  NullPool through PgBouncer, transaction mode (default_pool_size --pool)

    bench/python_flask.py --build BUILD_DIR [--requests N] [--threads T] [--pool P]
                          [--out results.csv]

Starts a throwaway PostgreSQL (contrib/scratch-pg.sh) unless FORKPOOL_TEST_PG_URL
is set, and its own forkpoold and pgbouncer; writes a CSV (config, requests,
failures, seconds, requests_per_s, p50_ms, p99_ms, max_server_connections) and,
if gnuplot is installed, a PNG next to it. Run as root (pgbouncer then runs as
"postgres"). Only 127.0.0.1 and Unix sockets are used.
"""
import argparse
import csv
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
sys.path.insert(0, os.path.join(ROOT, "python", "tests"))
import fptest  # noqa: E402
import loadgen  # noqa: E402
from test_gunicorn import Gunicorn  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def server_pids(mon):
    """The client backends of the test database, but the monitor's own."""
    return {r[0] for r in mon.execute(
        "select pid from pg_stat_activity where datname = %s and "
        "backend_type = 'client backend' and pid <> pg_backend_pid()",
        (fptest.database(fptest.pg_url()),))}


class PgBouncer:
    def __init__(self, pool):
        self.dir = tempfile.mkdtemp(prefix="fp-bench-pgb-")
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        u = fptest.pg_url()
        import urllib.parse
        q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(u).query))
        with open(os.path.join(self.dir, "users.txt"), "w") as f:
            f.write('"%s" ""\n' % fptest.user(u))
        with open(os.path.join(self.dir, "pgbouncer.ini"), "w") as f:
            f.write("[databases]\n%s = host=%s port=%s dbname=%s user=%s\n"
                    "[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = %d\n"
                    "unix_socket_dir =\nauth_type = trust\nauth_file = %s/users.txt\n"
                    "pool_mode = transaction\ndefault_pool_size = %d\nmax_client_conn = 500\n"
                    "logfile = %s/pgbouncer.log\npidfile = %s/pgbouncer.pid\n"
                    "ignore_startup_parameters = extra_float_digits\n"
                    % (fptest.database(u), q.get("host"), q.get("port"), fptest.database(u),
                       fptest.user(u), self.port, self.dir, pool, self.dir, self.dir))
        cmd = ["/usr/sbin/pgbouncer", os.path.join(self.dir, "pgbouncer.ini")]
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres")
            for n in os.listdir(self.dir):
                shutil.chown(os.path.join(self.dir, n), "postgres")
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("pgbouncer did not start")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def run_config(name, args):
    u = fptest.pg_url()
    user, db = fptest.user(u), fptest.database(u)
    import urllib.parse
    q = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(u).query))
    direct = "postgresql+psycopg://%s@/%s?host=%s&port=%s" % (user, db, q.get("host"),
                                                              q.get("port"))
    mon = fptest.pg_direct()
    # Backends that were there before this configuration started are not its own.
    baseline = server_pids(mon)
    sup = bouncer = None
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, "python"),
               FORKPOOL_LIBRARY=os.path.join(args.build, "worker", "libforkpool.so.0"))
    if name == "queue":
        env.update(FPT_URL=direct, FPT_POOL="queue")
    elif name == "null":
        env.update(FPT_URL=direct, FPT_POOL="null")
    elif name == "forkpool":
        sup = fptest.Supervisor(u, pool_lines="pool_size = %d\nmax_overflow = 0\n"
                                "pool_timeout = 60" % args.pool)
        env.update(FPT_URL="postgresql+psycopg://%s@localhost/%s" % (user, db),
                   FPT_POOL="forkpool", FORKPOOL_SOCKET=sup.socket)
    else:
        bouncer = PgBouncer(args.pool)
        env.update(FPT_URL="postgresql+psycopg://%s@127.0.0.1:%d/%s" % (user, bouncer.port, db),
                   FPT_POOL="null")
    env["FPT_LOGDIR"] = tempfile.gettempdir()
    g = Gunicorn(env, workers=args.workers)
    samples, stop = [], threading.Event()

    def sample():
        while not stop.is_set():
            samples.append(len(server_pids(mon) - baseline))
            time.sleep(0.05)

    try:
        loadgen.run("127.0.0.1", g.port, "/five", args.threads, 10)  # warm-up
        t = threading.Thread(target=sample)
        t.start()
        try:
            results, secs = loadgen.run("127.0.0.1", g.port, "/five", args.threads,
                                        args.requests // args.threads)
        finally:
            stop.set()
            t.join(10)
    finally:
        g.stop()
        if sup:
            sup.cleanup()
        if bouncer:
            bouncer.stop()
        mon.close()
    ok = sorted(r[2] for r in results if r[0] == 200)
    n = len(results)

    def pct(p):
        return ok[min(len(ok) - 1, int(p * len(ok)))] * 1000 if ok else float("nan")

    return dict(config=name, requests=n, failures=n - len(ok), seconds=round(secs, 3),
                requests_per_s=round(len(ok) / secs, 1), p50_ms=round(pct(0.50), 2),
                p99_ms=round(pct(0.99), 2), max_server_connections=max(samples or [0]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True, help="the build tree (forkpoold, libforkpool)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=32)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--pool", type=int, default=4)
    ap.add_argument("--configs", default="queue,null,forkpool,pgbouncer")
    ap.add_argument("--out", default="python_flask.csv")
    args = ap.parse_args()
    os.environ["FORKPOOL_FORKPOOLD"] = os.path.join(args.build, "agent", "forkpoold")
    os.environ["FORKPOOL_LIBRARY"] = os.path.join(args.build, "worker", "libforkpool.so.0")
    pgdir = None
    if not os.environ.get("FORKPOOL_TEST_PG_URL"):
        pgdir = tempfile.mkdtemp(prefix="fp-bench-pg-")
        os.chmod(pgdir, 0o755)
        subprocess.run([os.path.join(ROOT, "contrib", "scratch-pg.sh"), "start", pgdir],
                       check=True)
        out = subprocess.run(["bash", "-c", ". %s/env && env" % pgdir], capture_output=True,
                             text=True, check=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition("=")
            if k.startswith(("FORKPOOL_TEST_PG", "PG")):
                os.environ[k] = v
    rows = []
    try:
        for name in args.configs.split(","):
            r = run_config(name, args)
            print("%-10s %6d req %4d failed %8.1f req/s  p50 %7.2f ms  p99 %7.2f ms  "
                  "max server connections %d" % (r["config"], r["requests"], r["failures"],
                                                 r["requests_per_s"], r["p50_ms"], r["p99_ms"],
                                                 r["max_server_connections"]), flush=True)
            rows.append(r)
    finally:
        if pgdir:
            subprocess.run([os.path.join(ROOT, "contrib", "scratch-pg.sh"), "stop", pgdir])
    with open(args.out, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    gp = shutil.which("gnuplot")
    if gp:
        png = os.path.splitext(args.out)[0] + ".png"
        script = ("set terminal png size 800,450; set output '%s'; set datafile separator ',';"
                  "set style data histograms; set style fill solid 0.6; set key off; set yrange [0:*];"
                  "set title 'Flask route, 5 queries, gunicorn %d sync workers';"
                  "set ylabel 'requests/s'; plot '%s' using 5:xtic(1) skip 1"
                  % (png, args.workers, args.out))
        subprocess.run([gp, "-e", script], check=False)


if __name__ == "__main__":
    main()
