# SPDX-License-Identifier: MIT
"""The server's part of a MySQL handshake, played with a leased session's values.

The same method as libforkpool's adoption for Connector/C (adopt/myadopt.c):
the client library connects to something of ours, we send the greeting of
the real session (version, thread id, capabilities, collation, status,
scramble), read its HandshakeResponse, check that it asks for what the
session negotiated where that changes the protocol or the session's
semantics, answer OK, and then put the real socket under the client library.
"""
import struct

CLIENT_FOUND_ROWS = 1 << 1
CLIENT_CONNECT_WITH_DB = 1 << 3
CLIENT_COMPRESS = 1 << 5
CLIENT_LOCAL_FILES = 1 << 7
CLIENT_PROTOCOL_41 = 1 << 9
CLIENT_SSL = 1 << 11
CLIENT_TRANSACTIONS = 1 << 13
CLIENT_MULTI_STATEMENTS = 1 << 16
CLIENT_MULTI_RESULTS = 1 << 17
CLIENT_PS_MULTI_RESULTS = 1 << 18
CLIENT_PLUGIN_AUTH = 1 << 19
CLIENT_SESSION_TRACK = 1 << 23
CLIENT_DEPRECATE_EOF = 1 << 24
CLIENT_MYSQL = 1

SERVER_STATUS_IN_TRANS = 0x0001
SERVER_STATUS_AUTOCOMMIT = 0x0002
SERVER_SESSION_STATE_CHANGED = 0x4000

# Bits that must be the same on both sides: they change how replies are framed
# (DEPRECATE_EOF, PROTOCOL_41, COMPRESS) or what the session reports
# (FOUND_ROWS: affected rows are "found" rows, which SQLAlchemy relies on).
MUST_MATCH = CLIENT_FOUND_ROWS | CLIENT_PROTOCOL_41 | CLIENT_COMPRESS | CLIENT_DEPRECATE_EOF
# Bits a client may ask for only if the session has them.
NEEDS_SESSION = CLIENT_MULTI_STATEMENTS | CLIENT_MULTI_RESULTS | CLIENT_PS_MULTI_RESULTS

ER_HANDSHAKE_ERROR = 1043


class Refused(Exception):
    """The client library would not speak the leased session's protocol."""


def packet(seq, payload):
    return struct.pack("<I", len(payload))[:3] + bytes([seq]) + payload


def greeting(s):
    """HandshakeV10 of session s (a forkpool._lib.MySQLSession)."""
    caps = s.server_capabilities & ~CLIENT_SSL  # TLS cannot be leased: never offer it
    scramble = bytes(s.scramble)
    out = bytes([s.protocol_version or 10]) + s.server_version + b"\0"
    out += struct.pack("<I", s.thread_id) + scramble[:8] + b"\0"
    out += struct.pack("<H", caps & 0xFFFF) + bytes([s.server_language & 0xFF])
    out += struct.pack("<H", s.server_status & ~SERVER_SESSION_STATE_CHANGED & 0xFFFF)
    out += struct.pack("<H", caps >> 16) + bytes([21]) + b"\0" * 6
    out += struct.pack("<I", 0 if caps & CLIENT_MYSQL else s.server_ext_capabilities)
    out += scramble[8:20] + b"\0" + b"mysql_native_password\0"
    return packet(0, out)


def ok(s, seq=2):
    status = s.server_status & ~SERVER_SESSION_STATE_CHANGED & 0xFFFF
    return packet(seq, b"\0\0\0" + struct.pack("<HH", status, 0))


def refusal(why, seq=2):
    return packet(seq, b"\xff" + struct.pack("<H", ER_HANDSHAKE_ERROR) + b"#08S01"
                  + why.encode()[:280])


def read_packet(recv):
    """One packet through recv(n) (which returns exactly n bytes or raises)."""
    head = recv(4)
    n = head[0] | head[1] << 8 | head[2] << 16
    return head[3], recv(n)


def check_response(s, seq, body, driver):
    """Checks a HandshakeResponse41 against session s; raises Refused with the reason."""
    if seq != 1 or len(body) < 32:
        raise Refused("unexpected handshake response from %s" % driver)
    got = struct.unpack_from("<I", body, 0)[0]
    want = s.client_flag
    diff = (got ^ want) & MUST_MATCH
    extra = got & ~want & NEEDS_SESSION
    if diff or extra:
        raise Refused(
            "capability mismatch: %s asks for capabilities 0x%08x, the leased session "
            "negotiated 0x%08x (differing bits 0x%08x); set the pool's URL or the driver's "
            "client_flag so that they agree" % (driver, got, want, diff | extra))
    return got


COM_QUERY = 3


def check_set_names(sock, charset, driver):
    """Checks what the driver sent after its handshake, if anything, without waiting.

    Only "SET NAMES <charset>" (PyMySQL >= 1.1 sends it at the end of connect()) is
    allowed: the session already has that charset, so answering OK in its place
    changes nothing. Anything else raises Refused.
    """
    sock.setblocking(False)
    try:
        extra = sock.recv(65536)
    except BlockingIOError:
        return
    if not extra:
        return
    want = ("SET NAMES " + charset).encode()
    n = extra[0] | extra[1] << 8 | extra[2] << 16 if len(extra) >= 4 else -1
    if n != len(extra) - 4 or extra[3] != 0 or extra[4:5] != bytes([COM_QUERY]) or \
            extra[5:].strip().upper() != want.upper():
        raise Refused("%s sent %r after its handshake; only %r can be answered in the "
                      "session's place" % (driver, extra[4:68], want.decode()))


def client_flag_for(s, base):
    """The driver's client_flag: base, with FOUND_ROWS and multi-statements as the session has them."""
    flag = base & ~(CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS)
    return flag | (s.client_flag & (CLIENT_FOUND_ROWS | CLIENT_MULTI_STATEMENTS))


# MariaDB's character set names that Python drivers spell differently.
CHARSET_ALIASES = {"utf8mb3": "utf8"}
