"""What the drop-in's Python client programs (pyclients.py, txclients.py)
print: one "ok - LABEL: what" or "FAIL - LABEL: what" line per check, which
tests/dropin/lib.sh's dt_client_checks counts. The program sets `label` (its
driver) and ends with `sys.exit(exit_status())`."""

import os

label = ""
fails = 0


def ok(desc):
    print("ok - %s: %s" % (label, desc), flush=True)


def fail(desc):
    global fails
    fails += 1
    print("FAIL - %s: %s" % (label, desc), flush=True)


def check(cond, desc):
    (ok if cond else fail)(desc)
    return cond


def exit_status():
    return 1 if fails else 0


def read_to_end(fd):
    """Everything fd (a pipe's end) gives until its writers are gone; closes it."""
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    return data


def q1(conn, sql, params=None):
    """The first row of one statement on a DB-API connection."""
    cur = conn.cursor()
    cur.execute(sql, params)
    row = cur.fetchone()
    cur.close()
    return row
