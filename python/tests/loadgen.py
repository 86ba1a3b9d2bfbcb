# SPDX-License-Identifier: MIT
"""A stdlib threaded HTTP load generator: N threads, each sending requests in turn."""
import http.client
import threading
import time


def run(host, port, path, threads, per_thread, timeout=60.0):
    """Returns (results, seconds): results is a list of (status, body, latency_s) or
    (None, error text, latency_s) for requests that failed."""
    results = []
    lock = threading.Lock()

    def worker():
        conn = None
        for _ in range(per_thread):
            t0 = time.monotonic()
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, port, timeout=timeout)
                conn.request("GET", path)
                r = conn.getresponse()
                body = r.read()
                res = (r.status, body, time.monotonic() - t0)
                if r.getheader("Connection", "").lower() == "close" or r.will_close:
                    conn.close()
                    conn = None
            except Exception as e:  # counted as a failed request
                res = (None, repr(e), time.monotonic() - t0)
                if conn is not None:
                    conn.close()
                conn = None
            with lock:
                results.append(res)
        if conn is not None:
            conn.close()

    ts = [threading.Thread(target=worker) for _ in range(threads)]
    start = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return results, time.monotonic() - start
