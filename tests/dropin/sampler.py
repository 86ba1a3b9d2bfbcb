"""sampler.py OUT APP... — count the server's backends with these application_names.

Connects straight to the scratch server (PGHOST, PGPORT, PGUSER, PGDATABASE; never
through the drop-in) and counts, every 20 ms, the backends whose application_name
is one of APP. Writes "MAX SAMPLES" to OUT after every sample (so the fixture
knows it runs) and once more on SIGTERM, then exits 0.
"""
import os
import signal
import sys
import time

import psycopg2

out, apps = sys.argv[1], sys.argv[2:]
stop = False


def on_term(signum, frame):
    global stop
    stop = True


signal.signal(signal.SIGTERM, on_term)
conn = psycopg2.connect("application_name=dt-sampler")
conn.autocommit = True
cur = conn.cursor()
best = samples = 0


def write():
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d %d\n" % (best, samples))
    os.replace(tmp, out)


while not stop:
    cur.execute("select count(*) from pg_stat_activity where application_name = any(%s)",
                (apps,))
    n = cur.fetchone()[0]
    samples += 1
    if n > best or samples == 1:
        best = max(best, n)
        write()
    time.sleep(0.02)
write()
conn.close()
