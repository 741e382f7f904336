"""
nats_client.py - a small synchronous NATS client for tests, on a raw socket.

The text protocol (INFO, CONNECT, PUB, HPUB, SUB, UNSUB, MSG, HMSG,
PING/PONG, +OK/-ERR) and request-reply through one wildcard inbox
subscription; on top of it the JetStream API calls the tests need: create
and inspect a stream ($JS.API.STREAM.CREATE / INFO), publish with a
Nats-Msg-Id (deduplicated by the server) and wait for the PubAck, and read a
message back by sequence from the stream leader ($JS.API.STREAM.MSG.GET) or
from any replica (direct get, $JS.API.DIRECT.GET, allow_direct streams).

Synchronous: nothing reads the socket between calls; each call reads until
what it waits for arrives or its deadline passes, answering the server's
PINGs on the way. Messages for other subscriptions seen meanwhile are queued
(next_msg returns them). The caller opens the TCP connection (a test bed
host opens it from inside its namespace) and hands it over.

Only the Python standard library.
"""

import base64
import collections
import json
import os
import socket
import time

CRLF = b"\r\n"
MAX_CONTROL_LINE = 64 * 1024


class NatsError(Exception):
    """A protocol error: -ERR from the server, a malformed line, or the connection closed."""


class NoResponders(NatsError):
    """A request nobody is subscribed to answer (status 503): e.g. a stream with no leader yet."""


class JSAPIError(NatsError):
    """A JetStream API error answer: .code (HTTP-like), .err_code (JetStream's own), .description."""

    def __init__(self, error):
        self.code = error.get("code")
        self.err_code = error.get("err_code")
        self.description = error.get("description", "")
        super().__init__("JetStream error %s/%s: %s" % (self.code, self.err_code, self.description))


class Msg:
    """A delivered message: subject, sid, reply, headers (name -> first value), status, description, data (bytes)."""

    __slots__ = ("subject", "sid", "reply", "headers", "status", "description", "data")

    def __init__(self, subject, sid, reply, data, headers=None, status=None, description=""):
        self.subject, self.sid, self.reply, self.data = subject, sid, reply, data
        self.headers = headers or {}
        self.status, self.description = status, description

    def __repr__(self):
        return "Msg(%s, status=%s, headers=%r, data=%r)" % (self.subject, self.status, self.headers, self.data[:80])


def encode_headers(headers):
    """{'Nats-Msg-Id': 'x'} -> b'NATS/1.0\\r\\nNats-Msg-Id: x\\r\\n\\r\\n'."""
    out = [b"NATS/1.0"]
    for k, v in headers.items():
        k, v = str(k), str(v)
        if any(c in k for c in ":\r\n ") or any(c in v for c in "\r\n"):
            raise ValueError("bad header %r: %r" % (k, v))
        out.append(("%s: %s" % (k, v)).encode("utf-8"))
    return CRLF.join(out) + CRLF + CRLF


def decode_headers(block):
    """b'NATS/1.0 503 No Responders\\r\\nK: V\\r\\n\\r\\n' -> (status or None, description, {K: V})."""
    lines = block.decode("utf-8", "replace").split("\r\n")
    first = lines[0]
    if not first.startswith("NATS/1.0"):
        raise NatsError("bad header block %r" % block[:80])
    status, description = None, ""
    rest = first[len("NATS/1.0"):].strip()
    if rest:
        code, _, description = rest.partition(" ")
        status = int(code)
    headers = {}
    for line in lines[1:]:
        if not line:
            continue
        k, sep, v = line.partition(":")
        if not sep:
            raise NatsError("bad header line %r" % line)
        headers.setdefault(k.strip(), v.strip())
    return status, description, headers


class Conn:
    """
    One NATS connection over sock (already connected). Reads the server's
    INFO, sends CONNECT (headers and no_responders on) and a PING, and waits
    for the PONG: a server that does not answer within timeout raises
    TimeoutError. .info is the server's INFO (server_name among others).
    """

    def __init__(self, sock, name="roomcast-test", timeout=5.0):
        self.sock = sock
        self.timeout = timeout
        self.buf = bytearray()
        self.pending = collections.deque()  # messages read while waiting for something else
        self.next_sid = 1
        self.inbox_prefix = None
        self.inbox_sid = None
        self.next_reply = 0
        self.closed = False
        deadline = time.monotonic() + timeout
        op, arg = self._read_op(deadline)
        if op != b"INFO":
            raise NatsError("expected INFO first, got %r" % op)
        self.info = json.loads(arg)
        if not self.info.get("headers"):
            raise NatsError("the server does not support headers")
        connect = {"verbose": False, "pedantic": False, "headers": True, "no_responders": True,
                   "protocol": 1, "lang": "python-test", "version": "0", "name": name}
        self._send(b"CONNECT " + json.dumps(connect).encode() + CRLF)
        self.ping(timeout=max(0.001, deadline - time.monotonic()))

    # -- low level --

    def _send(self, data):
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.closed = True
            raise NatsError("send: %s" % e) from e

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no data from the server within the deadline")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise TimeoutError("no data from the server within the deadline") from None
        except OSError as e:
            self.closed = True
            raise NatsError("recv: %s" % e) from e
        if not data:
            self.closed = True
            raise NatsError("the server closed the connection")
        self.buf += data

    def _read_line(self, deadline):
        while True:
            i = self.buf.find(CRLF)
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > MAX_CONTROL_LINE:
                raise NatsError("control line too long")
            self._fill(deadline)

    def _read_exact(self, n, deadline):
        while len(self.buf) < n + 2:
            self._fill(deadline)
        data = bytes(self.buf[:n])
        if self.buf[n:n + 2] != CRLF:
            raise NatsError("payload not followed by CRLF")
        del self.buf[:n + 2]
        return data

    def _read_op(self, deadline):
        """The next protocol operation: (op, rest) with op upper-case bytes; MSG/HMSG return a Msg as rest."""
        line = self._read_line(deadline)
        op, _, arg = line.partition(b" ")
        op = op.upper()
        if op == b"MSG":
            # MSG <subject> <sid> [reply-to] <#bytes>
            parts = arg.split()
            if len(parts) not in (3, 4):
                raise NatsError("bad MSG line %r" % line)
            data = self._read_exact(int(parts[-1]), deadline)
            reply = parts[2].decode() if len(parts) == 4 else None
            return op, Msg(parts[0].decode(), int(parts[1]), reply, data)
        if op == b"HMSG":
            # HMSG <subject> <sid> [reply-to] <#header bytes> <#total bytes>
            parts = arg.split()
            if len(parts) not in (4, 5):
                raise NatsError("bad HMSG line %r" % line)
            hlen, total = int(parts[-2]), int(parts[-1])
            if hlen > total:
                raise NatsError("bad HMSG sizes %r" % line)
            raw = self._read_exact(total, deadline)
            status, desc, headers = decode_headers(raw[:hlen])
            reply = parts[2].decode() if len(parts) == 5 else None
            return op, Msg(parts[0].decode(), int(parts[1]), reply, raw[hlen:], headers, status, desc)
        if op == b"-ERR":
            raise NatsError("server error: %s" % arg.decode("utf-8", "replace"))
        return op, arg

    def _pump(self, deadline):
        """Reads one operation; answers PING, keeps INFO; returns a Msg, b'PONG', or None for anything else."""
        op, arg = self._read_op(deadline)
        if op in (b"MSG", b"HMSG"):
            return arg
        if op == b"PING":
            self._send(b"PONG" + CRLF)
        elif op == b"PONG":
            return b"PONG"
        elif op == b"INFO":
            self.info.update(json.loads(arg))
        elif op != b"+OK":
            raise NatsError("unexpected operation %r" % op)
        return None

    # -- the protocol --

    def ping(self, timeout=None):
        """A round trip: returns once the server answered PONG (everything sent before is processed)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        self._send(b"PING" + CRLF)
        while True:
            r = self._pump(deadline)
            if r == b"PONG":
                return
            if isinstance(r, Msg):
                self.pending.append(r)

    def pub(self, subject, data=b"", reply=None, headers=None):
        """Publishes data (bytes or str) to subject, with headers (dict) when given (HPUB)."""
        if isinstance(data, str):
            data = data.encode("utf-8")
        r = (" " + reply) if reply else ""
        if headers:
            hdr = encode_headers(headers)
            line = "HPUB %s%s %d %d" % (subject, r, len(hdr), len(hdr) + len(data))
            self._send(line.encode() + CRLF + hdr + data + CRLF)
        else:
            line = "PUB %s%s %d" % (subject, r, len(data))
            self._send(line.encode() + CRLF + data + CRLF)

    def sub(self, subject, queue=None):
        """Subscribes; returns the sid."""
        sid = self.next_sid
        self.next_sid += 1
        q = (" " + queue) if queue else ""
        self._send(("SUB %s%s %d" % (subject, q, sid)).encode() + CRLF)
        return sid

    def unsub(self, sid):
        self._send(("UNSUB %d" % sid).encode() + CRLF)

    def next_msg(self, timeout):
        """The next message of any subscription, or None when none came within timeout."""
        if self.pending:
            return self.pending.popleft()
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = self._pump(deadline)
            except TimeoutError:
                return None
            if isinstance(r, Msg):
                return r

    def request(self, subject, data=b"", headers=None, timeout=None):
        """
        Publishes with a fresh reply subject of the connection's inbox and
        returns the answer (a Msg). Raises NoResponders (status 503) or
        TimeoutError; a late answer to an earlier request that timed out is
        dropped.
        """
        if self.inbox_sid is None:
            self.inbox_prefix = "_INBOX.%s" % os.urandom(8).hex()
            self.inbox_sid = self.sub(self.inbox_prefix + ".*")
        self.next_reply += 1
        reply = "%s.%d" % (self.inbox_prefix, self.next_reply)
        self.pub(subject, data, reply=reply, headers=headers)
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            r = self._pump(deadline)
            if not isinstance(r, Msg):
                continue
            if r.sid != self.inbox_sid:
                self.pending.append(r)
                continue
            if r.subject != reply:
                continue  # the answer to an earlier request that timed out
            if r.status == 503:
                raise NoResponders("no responders for %s" % subject)
            return r

    def close(self):
        self.closed = True
        try:
            self.sock.close()
        except OSError:
            pass


class JetStream:
    """The JetStream API over a Conn (default domain, default account)."""

    def __init__(self, conn, timeout=None):
        self.conn = conn
        self.timeout = timeout

    def api(self, what, body=None, timeout=None):
        """A $JS.API.<what> request with a JSON body; returns the JSON answer, raises JSAPIError on an error."""
        data = json.dumps(body).encode() if body is not None else b""
        msg = self.conn.request("$JS.API." + what, data, timeout=timeout or self.timeout)
        answer = json.loads(msg.data)
        if "error" in answer:
            raise JSAPIError(answer["error"])
        return answer

    def account_info(self, timeout=None):
        return self.api("INFO", timeout=timeout)

    def stream_create(self, config, timeout=None):
        """Creates the stream described by config (a StreamConfig dict with 'name'); returns its info."""
        return self.api("STREAM.CREATE." + config["name"], config, timeout)

    def stream_info(self, name, timeout=None):
        """The stream's info: config, state (messages, first_seq, last_seq), cluster (leader, replicas)."""
        return self.api("STREAM.INFO." + name, timeout=timeout)

    def publish(self, subject, data, msg_id=None, headers=None, timeout=None):
        """
        Publishes into the stream that holds subject and returns the PubAck
        ({'stream', 'seq', 'duplicate'?}); msg_id goes in Nats-Msg-Id, which
        the server deduplicates within the stream's duplicate window, so a
        retry with the same msg_id after a timeout is stored at most once.
        """
        h = dict(headers or {})
        if msg_id is not None:
            h["Nats-Msg-Id"] = msg_id
        msg = self.conn.request(subject, data, headers=h or None, timeout=timeout or self.timeout)
        ack = json.loads(msg.data)
        if "error" in ack:
            raise JSAPIError(ack["error"])
        if "seq" not in ack:
            raise NatsError("not a PubAck: %r" % msg.data[:200])
        return ack

    def msg_get(self, stream, seq, timeout=None):
        """
        The message at seq, read by the stream leader: {'subject', 'seq',
        'headers' (dict), 'data' (bytes), 'time'}. JSAPIError 404 when there is none.
        """
        m = self.api("STREAM.MSG.GET." + stream, {"seq": seq}, timeout)["message"]
        headers = {}
        if m.get("hdrs"):
            _, _, headers = decode_headers(base64.b64decode(m["hdrs"]))
        return {"subject": m["subject"], "seq": m["seq"], "headers": headers,
                "data": base64.b64decode(m.get("data") or ""), "time": m.get("time")}

    def direct_get(self, stream, seq, timeout=None):
        """
        The message at seq as any replica has it (the stream needs
        allow_direct): same shape as msg_get, or None when that replica has
        no such message (status 404). A lagging replica may answer None.
        """
        msg = self.conn.request("$JS.API.DIRECT.GET." + stream, json.dumps({"seq": seq}).encode(),
                                timeout=timeout or self.timeout)
        if msg.status == 404:
            return None
        if msg.status is not None:
            raise NatsError("direct get: status %d %s" % (msg.status, msg.description))
        h = msg.headers
        return {"subject": h.get("Nats-Subject"), "seq": int(h.get("Nats-Sequence", "0")), "headers": h,
                "data": msg.data, "time": h.get("Nats-Time-Stamp")}
