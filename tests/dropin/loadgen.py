"""loadgen.py --requests N --concurrency C TARGET...  (stdlib only)

Sends N requests from C threads, round-robin over the TARGETs, and prints one
JSON line: {"codes": {...}, "bodies_bad": [...], "pids": [...], "apps": [...],
"seconds": ...}. A TARGET is http://127.0.0.1:PORT/PATH, or
fcgi:SOCKET:SCRIPT_FILENAME for a FastCGI server on a Unix socket (PHP-FPM).
"good" counts the good answers: status 200 with a body "ok pid=<backend pid>
app=<application_name> [host=<what the client library reports as the host>]
[worker=<the server process's pid>]"; "workers" counts the server processes that answered.
"""
import argparse
import collections
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--requests", type=int, required=True)
ap.add_argument("--concurrency", type=int, required=True)
ap.add_argument("--timeout", type=float, default=60)
ap.add_argument("targets", nargs="+")
args = ap.parse_args()


def http_get(url):
    try:
        with urllib.request.urlopen(url, timeout=args.timeout) as r:
            return r.status, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def fcgi_record(rtype, rid, content):
    return struct.pack("!BBHHBx", 1, rtype, rid, len(content), 0) + content


def fcgi_params(params):
    out = b""
    for k, v in params.items():
        k, v = k.encode(), v.encode()
        for n in (len(k), len(v)):
            out += bytes([n]) if n < 128 else struct.pack("!I", n | 0x80000000)
        out += k + v
    return out


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("FastCGI server closed the connection")
        buf += chunk
    return buf


def fcgi_get(sock_path, script):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(args.timeout)
    try:
        s.connect(sock_path)
        params = {"SCRIPT_FILENAME": script, "SCRIPT_NAME": "/" + script.rsplit("/", 1)[-1],
                  "REQUEST_METHOD": "GET", "QUERY_STRING": "", "SERVER_PROTOCOL": "HTTP/1.1",
                  "GATEWAY_INTERFACE": "CGI/1.1", "SERVER_NAME": "127.0.0.1",
                  "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1", "REQUEST_URI": "/"}
        msg = fcgi_record(1, 1, struct.pack("!HB5x", 1, 0))          # BEGIN_REQUEST, responder
        msg += fcgi_record(4, 1, fcgi_params(params)) + fcgi_record(4, 1, b"")
        msg += fcgi_record(5, 1, b"")                                   # empty STDIN
        s.sendall(msg)
        out, err = b"", b""
        while True:
            ver, rtype, rid, clen, plen = struct.unpack("!BBHHBx", recv_exact(s, 8))
            content = recv_exact(s, clen)
            recv_exact(s, plen)
            if rtype == 6:
                out += content
            elif rtype == 7:
                err += content
            elif rtype == 3:
                break
    finally:
        s.close()
    head, _, body = out.decode(errors="replace").partition("\r\n\r\n")
    status = 200
    for line in head.split("\r\n"):
        if line.lower().startswith("status:"):
            status = int(line.split(":", 1)[1].split()[0])
    if err:
        body += "\n[stderr] " + err.decode(errors="replace")
    return status, body


def fetch(target):
    if target.startswith("fcgi:"):
        _, sock_path, script = target.split(":", 2)
        return fcgi_get(sock_path, script)
    return http_get(target)


lock = threading.Lock()
codes = collections.Counter()
bad, pids, apps, hosts, workers = [], set(), set(), set(), set()
left = [args.requests]
good = [0]


def worker():
    while True:
        with lock:
            if left[0] == 0:
                return
            left[0] -= 1
            target = args.targets[left[0] % len(args.targets)]
        try:
            code, body = fetch(target)
        except Exception as e:
            code, body = type(e).__name__, str(e)
        fields = {}
        if body.startswith("ok "):
            fields = dict(kv.split("=", 1) for kv in body.split()[1:] if "=" in kv)
        with lock:
            codes[str(code)] += 1
            if code == 200 and "pid" in fields:
                good[0] += 1
                pids.add(fields["pid"])
                apps.add(fields.get("app"))
                if "host" in fields:
                    hosts.add(fields["host"])
                if "worker" in fields:
                    workers.add(fields["worker"])
            elif len(bad) < 5:
                bad.append("%s %s: %s" % (code, target, body[:300]))


t0 = time.monotonic()
threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"good": good[0], "codes": codes, "bodies_bad": bad, "pids": sorted(pids),
                  "apps": sorted(a for a in apps if a is not None), "hosts": sorted(hosts),
                  "workers": len(workers),
                  "seconds": round(time.monotonic() - t0, 2)}))
