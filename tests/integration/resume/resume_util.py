"""
resume_util.py - support for the "nothing lost" (resume and repair) tests.

Builds on ../gateway/harness.py (processes, readiness, SSE client, HTTP
helpers, log dump, reaping), which is imported as is and not modified. What
this module adds is what high-volume tests need and the harness does not
have:

- FastStream: an SSE subscriber that parses whole messages with bytes.split
  (no per-line Python work), keeps constant memory when given a callback, and
  is driven by a selector together with many others (pump);
- ResumingSubscriber: a FastStream that reconnects with Last-Event-ID (the id
  of the last message it received completely) when the gateway closes it;
- a keep-alive JSON POST client for publisher threads;
- helpers to publish through the CLI (`roomcast publish --ndjson`) and to read
  one metric.

Only the Python standard library; all traffic goes to 127.0.0.1.
"""

import http.client
import json
import os
import selectors
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))

import harness  # noqa: E402  (after the sys.path insert)
from harness import HOST, scaled  # noqa: E402,F401

PREAMBLE = b": connected\nretry: 3000\n\n"


def metric(port, name):
    """One value of the gateway's /metrics (0 when absent)."""
    return harness.get_metrics(port).get(name, 0.0)


def gseq_of(event_id):
    """b'6f1c2a9e-1042' or '6f1c2a9e-1042' -> 1042."""
    if isinstance(event_id, bytes):
        event_id = event_id.decode("ascii")
    return harness.gseq(event_id)


def epoch_of(event_id):
    if isinstance(event_id, bytes):
        event_id = event_id.decode("ascii")
    return harness.parse_id(event_id)[0]


# ---------------------------------------------------------------------------
# publishing
# ---------------------------------------------------------------------------

def cli_publish_file(cluster, path, out_path, timeout):
    """
    Starts `roomcast publish --ndjson < path > out_path` against the cluster's
    broker (batches of 1000 events per api request). Returns the Popen; the
    caller waits for it (and kills it on failure).
    """
    argv = [harness.CLI_BIN, "publish", "--ndjson", "--broker-bus", cluster.broker.bus,
            "--broker-api", cluster.broker.api]
    fin = open(path, "rb")
    fout = open(out_path, "wb")
    ferr = open(out_path + ".err", "wb")
    try:
        p = subprocess.Popen(argv, stdin=fin, stdout=fout, stderr=ferr, env=harness._child_env(), close_fds=True)
    finally:
        fin.close()
        fout.close()
        ferr.close()
    p.deadline = time.monotonic() + timeout
    return p


def cli_publish(cluster, events, timeout=None):
    """Publishes a list of event dicts with the CLI (ndjson); returns the ids."""
    text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
    r = cluster.cli("publish", "--ndjson", stdin=text, timeout=timeout or scaled(30))
    if r.returncode != 0:
        raise AssertionError("roomcast publish --ndjson exited %d: %s" % (r.returncode, r.stderr))
    ids = r.stdout.split()
    if len(ids) != len(events):
        raise AssertionError("roomcast publish printed %d ids for %d events" % (len(ids), len(events)))
    return ids


class KeepAlivePoster:
    """One keep-alive HTTP/1.1 connection that POSTs JSON to a gateway."""

    def __init__(self, port, timeout=None):
        self.port = port
        self.conn = http.client.HTTPConnection(HOST, port, timeout=timeout or scaled(20))
        self.requests = 0
        self.sock_ids = set()  # local ports used: 1 means one connection all along

    def post(self, obj):
        body = json.dumps(obj, separators=(",", ":")).encode("utf-8")
        self.conn.request("POST", "/api/v1/events", body=body, headers={"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        self.requests += 1
        if self.conn.sock is not None:
            self.sock_ids.add(self.conn.sock.getsockname()[1])
        if r.status != 201:
            raise AssertionError("POST to 127.0.0.1:%d: %d %r" % (self.port, r.status, data[:300]))
        if r.getheader("Connection", "").lower() == "close":
            raise AssertionError("the gateway closed a keep-alive publish connection")
        return json.loads(data)

    def close(self):
        self.conn.close()


# ---------------------------------------------------------------------------
# several brokers on one NATS stream: what the failover tests share
# ---------------------------------------------------------------------------

FAILOVER_ROOMS = ["r0", "r1", "r2", "r3"]


def nats_store_skip_reason():
    """Why the broker cannot run on a NATS stream here (a test exits 77 with it), or None."""
    import re
    import shutil
    if shutil.which("nats-server") is None:
        return "nats-server is not installed (Debian package nats-server; scripts/install-deps)"
    try:
        out = subprocess.run([harness.BROKER_BIN, "--help"], capture_output=True, text=True,
                             timeout=scaled(10)).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return "roomcast-broker --help failed: %r" % (e,)
    store = re.search(r"--store\b[^\n]*(\n\s{10,}[^\n]*)*", out)
    if store is None or "nats" not in store.group(0) or "--nats-url" not in out or "--nats-stream" not in out:
        return "roomcast-broker --help lists no --store nats (with --nats-url, --nats-stream)"
    return None


def failover_stream_specs():
    """20 streams over FAILOVER_ROOMS: four per room, and four following two rooms each."""
    rooms = FAILOVER_ROOMS
    specs = [[rooms[k % 4]] for k in range(16)]
    specs += [[rooms[k], rooms[(k + 1) % 4]] for k in range(4)]
    return specs


class Recorder:
    """A stream's events (on_event of a FastStream or ResumingSubscriber) with their arrival times."""

    def __init__(self, rooms):
        self.rooms = set(rooms)
        self.events = []  # (t, id bytes, data bytes)

    def __call__(self, eid, data):
        self.events.append((time.monotonic(), eid, data))


def check_deliveries(acked, recorders, fields=("room_id",)):
    """
    acked: [(id, event dict)] of every event answered 201 (each event once,
    its id the one its last answer gave). Raises AssertionError unless no id
    was answered for two events, every id has one epoch, and every recorder
    got exactly the acknowledged ids of its rooms, each once, in gseq order,
    with no stream.reset and, for each id, the event it was answered for
    (the fields named compared). Returns the longest time a stream went
    without an event, in seconds, and that stream's index and the time the
    gap ended (monotonic): (stall, k, t).
    """
    event_of = {}
    for eid, ev in acked:
        if eid in event_of:
            raise AssertionError("id %s answered for two events: %r and %r" % (eid, event_of[eid], ev))
        event_of[eid] = ev
    epochs = {epoch_of(eid) for eid in event_of}
    if len(epochs) > 1:
        raise AssertionError("one stream, one epoch: %r" % sorted(epochs))
    stall = (0.0, None, None)
    for k, rec in enumerate(recorders):
        got = []
        for t, eid, data in rec.events:
            if b"stream.reset" in data:
                raise AssertionError("stream %d got %r" % (k, data))
            eid = eid.decode("ascii")
            got.append(eid)
            ev = event_of.get(eid)
            if ev is not None:
                d = json.loads(data)
                if any(d.get(f) != ev.get(f) for f in fields):
                    raise AssertionError("stream %d: id %s carries %r, answered for %r" % (k, eid, d, ev))
        if len(got) != len(set(got)):
            dup = sorted({e for e in got if got.count(e) > 1}, key=gseq_of)[:5]
            raise AssertionError("stream %d got an id twice: %s" % (k, dup))
        want = sorted((eid for eid, ev in event_of.items() if ev["room_id"] in rec.rooms), key=gseq_of)
        if got != want:
            missing = sorted(set(want) - set(got), key=gseq_of)
            extra = sorted(set(got) - set(want), key=gseq_of)
            order = [a for a, b in zip(got, got[1:]) if gseq_of(a) >= gseq_of(b)]
            raise AssertionError("stream %d (rooms %s): %d ids, %d acknowledged; missing %s; not acknowledged "
                                 "%s; out of order after %s" % (k, sorted(rec.rooms), len(got), len(want),
                                                                missing[:8], extra[:8], order[:5]))
        times = [t for t, _, _ in rec.events]
        for a, b in zip(times, times[1:]):
            if b - a > stall[0]:
                stall = (b - a, k, b)
    return stall


# ---------------------------------------------------------------------------
# SSE subscribers
# ---------------------------------------------------------------------------

class StreamTest(harness.GatewayTest):
    """
    A GatewayTest that closes the streams it opened (self._fast: FastStream or
    ResumingSubscriber objects) after each test, before the processes stop.
    """

    def setUp(self):
        super().setUp()
        self._fast = []

    def tearDown(self):
        for s in self._fast:
            s.close()
        super().tearDown()


class FastStream:
    """
    One SSE GET over a raw socket, parsed per message (blocks separated by a
    blank line). on_event(id_bytes, data_bytes) is called for every event in
    arrival order; without it events go to self.events as (id, data) bytes.
    Comments go to self.comments (b'ping'), the first block (the preamble) is
    checked and kept in self.preamble.
    """

    def __init__(self, port, path, headers=None, on_event=None, rcvbuf=None, name=None, addr=HOST):
        self.port = port
        self.addr = addr
        self.path = path
        self.name = name or path
        self.on_event = on_event
        self.events = []
        self.comments = []
        self.status = None
        self.head = b""
        self.preamble = None
        self.first_block_after_preamble = None  # raw bytes of the first message
        self.eof = False
        self.count = 0
        self.last_id = None  # the id of the last complete event
        self.bytes = 0
        self.t_open = time.monotonic()
        self.t_first = None
        self.t_last = None
        self._buf = b""
        self._head_done = False
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(scaled(10))
        self.sock.connect((addr, port))
        lines = ["GET %s HTTP/1.1" % path, "Host: 127.0.0.1", "Accept: text/event-stream"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.sock.setblocking(False)

    def fileno(self):
        return self.sock.fileno()

    def socket(self):
        return self.sock

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def read_some(self, max_reads=8):
        """Reads what is available now (non-blocking); returns False once at EOF."""
        for _ in range(max_reads):
            try:
                data = self.sock.recv(1 << 20)
            except (BlockingIOError, InterruptedError):
                return True
            except (ConnectionResetError, BrokenPipeError):
                data = b""
            if not data:
                self.eof = True
                return False
            self._feed(data)
        return True

    def _feed(self, data):
        now = time.monotonic()
        self.bytes += len(data)
        if not self._head_done:
            self._buf += data
            i = self._buf.find(b"\r\n\r\n")
            if i < 0:
                return
            self.head = self._buf[:i + 4]
            self.status = int(self.head.split(b" ", 2)[1])
            data = self._buf[i + 4:]
            self._buf = b""
            self._head_done = True
            if self.status != 200:
                raise AssertionError("GET %s: %d %r" % (self.path, self.status, data[:300]))
        buf = self._buf + data
        blocks = buf.split(b"\n\n")
        self._buf = blocks.pop()
        on_event = self.on_event
        for b in blocks:
            if self.preamble is None:
                self.preamble = b + b"\n\n"
                if self.preamble != PREAMBLE:
                    raise AssertionError("GET %s: unexpected preamble %r" % (self.path, self.preamble))
                continue
            if b.startswith(b"id: "):
                i = b.find(b"\ndata: ")
                if i > 0 and b.find(b"\n", i + 7) < 0:
                    eid, data = b[4:i], b[i + 7:]
                else:
                    eid, data = self._slow_parse(b)
            elif b.startswith(b":"):
                self.comments.append(b[1:].strip())
                continue
            else:
                eid, data = self._slow_parse(b)
                if data is None:
                    continue
            if self.first_block_after_preamble is None:
                self.first_block_after_preamble = b + b"\n\n"
            if self.t_first is None:
                self.t_first = now
            self.t_last = now
            self.count += 1
            if eid is not None:
                self.last_id = eid
            if on_event is None:
                self.events.append((eid, data))
            else:
                on_event(eid, data)

    def _slow_parse(self, block):
        eid, data = None, None
        for line in block.split(b"\n"):
            if line.startswith(b":"):
                self.comments.append(line[1:].strip())
                continue
            field, _, value = line.partition(b":")
            if value.startswith(b" "):
                value = value[1:]
            if field == b"id":
                eid = value
            elif field == b"data":
                data = value if data is None else data + b"\n" + value
        return eid, data

    def wait_open(self, timeout=None):
        """Waits for the head and the preamble."""
        deadline = time.monotonic() + (timeout or scaled(10))
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        try:
            while self.preamble is None and not self.eof:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("GET %s: no preamble within the deadline" % self.path)
                if sel.select(left):
                    self.read_some()
        finally:
            sel.close()
        if self.preamble is None:
            raise AssertionError("GET %s: closed before the preamble" % self.path)
        return self


def pump(streams, done, timeout, what, idle=None, status=None):
    """
    Reads every stream (FastStream or ResumingSubscriber) as data arrives until
    done() is true; AssertionError after timeout seconds. idle(): called about
    every 50 ms (e.g. to reconnect closed subscribers). status(): a string
    added to the timeout message.
    """
    deadline = time.monotonic() + timeout
    sel = selectors.DefaultSelector()
    registered = {}

    def sync():
        # keyed by fd and socket object: a reconnect may get the fd number of the closed socket back
        live = {s.fileno(): (s, s.socket()) for s in streams if s.fileno() >= 0 and not s.eof}
        for fd in list(registered):
            if fd not in live or registered[fd][1] is not live[fd][1]:
                try:
                    sel.unregister(fd)
                except (KeyError, ValueError, OSError):
                    pass
                del registered[fd]
        for fd, (s, sock) in live.items():
            if fd not in registered:
                sel.register(fd, selectors.EVENT_READ, s)
                registered[fd] = (s, sock)

    try:
        sync()
        while not done():
            now = time.monotonic()
            if now >= deadline:
                raise AssertionError("timed out after %.1fs waiting for %s%s" % (
                    timeout, what, "" if status is None else " (%s)" % status()))
            changed = False
            for key, _ in sel.select(min(0.05, deadline - now)):
                if not key.data.read_some():
                    changed = True
            if idle is not None and idle():
                changed = True
            if changed:
                sync()
    finally:
        sel.close()


def publish_file_while_reading(cluster, path, streams, checkers, is_done, timeout, what, status=None):
    """
    Publishes the NDJSON file at path with the CLI while reading streams
    (FastStream, each feeding its checker) until is_done(checker) holds for
    every checker. A checker's .error, or a stream the gateway closed, fails
    at once. Returns the CLI's exit code; the CLI is always reaped.
    """
    pub = cli_publish_file(cluster, path, os.path.join(cluster.dir, "burst.ids"), scaled(60))
    try:
        def done():
            for k in checkers:
                if k.error is not None:
                    raise AssertionError("%s: %s" % (k.name, k.error))
            for s in streams:
                if s.eof:
                    raise AssertionError("%s: the gateway closed the stream after %d events" % (s.name, s.count))
            return all(is_done(k) for k in checkers)

        pump(streams, done, timeout, what, status=status)
        return pub.wait(timeout=max(1.0, pub.deadline - time.monotonic()))
    finally:
        if pub.poll() is None:
            pub.kill()
            pub.wait()


class ResumingSubscriber:
    """
    A subscriber that, when the gateway closes its stream, reconnects (to the
    next port in ports, round robin) with Last-Event-ID set to the id of the
    last event it received completely. on_event sees every event of every
    connection, in arrival order. A port may also be an (address, port)
    pair: a gateway on another host.
    """

    def __init__(self, ports, path, on_event, rcvbuf=None, name=None, max_reconnects=200):
        self.ports = list(ports)
        self.path = path
        self.on_event = on_event
        self.rcvbuf = rcvbuf
        self.name = name or path
        self.max_reconnects = max_reconnects
        self.reconnects = 0
        self.last_id = None
        self.count = 0
        self.paused = False
        self.t_first = None
        self.t_last = None
        self._i = 0
        self.cur = self._connect(None)

    def _connect(self, last_id):
        headers = {"Last-Event-ID": last_id.decode("ascii")} if last_id is not None else None
        port = self.ports[self._i % len(self.ports)]
        self._i += 1
        addr, port = port if isinstance(port, tuple) else (HOST, port)
        return FastStream(port, self.path, headers=headers, on_event=self._event, rcvbuf=self.rcvbuf,
                          name=self.name, addr=addr)

    def _event(self, eid, data):
        now = time.monotonic()
        if self.t_first is None:
            self.t_first = now
        self.t_last = now
        self.count += 1
        if eid is not None:
            self.last_id = eid
        self.on_event(eid, data)

    @property
    def eof(self):
        return self.paused or self.cur.eof

    def fileno(self):
        return -1 if self.paused else self.cur.fileno()

    def socket(self):
        return self.cur.sock

    def read_some(self):
        return self.cur.read_some()

    def reconnect_if_closed(self):
        """Reconnects a closed stream; returns True if it did."""
        if self.paused or not self.cur.eof:
            return False
        if self.reconnects >= self.max_reconnects:
            raise AssertionError("%s: more than %d reconnects" % (self.name, self.max_reconnects))
        self.cur.close()
        self.reconnects += 1
        self.cur = self._connect(self.last_id)
        return True

    def close(self):
        self.cur.close()


# ---------------------------------------------------------------------------
# a TCP proxy that can hold connections (to delay a gateway's bus subscription)
# or cut them (to take a gateway's broker api away for a while)
# ---------------------------------------------------------------------------

class HoldingProxy:
    """
    Listens on 127.0.0.1:<port> and forwards each connection to
    127.0.0.1:<upstream_port>, but only once release() was called: until then
    accepted connections wait (the nng handshake does not complete, so the
    gateway's bus pipe is not up). cut() drops every connection and closes
    the new ones at once (counted in .refused) until restore(): the broker
    stays up, the gateway's pipe through the proxy goes down and its redials
    fail. Threads are daemons and stop on close().
    """

    def __init__(self, upstream_port):
        import threading
        self.upstream_port = upstream_port
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((HOST, 0))
        self.lsock.listen(16)
        self.lsock.settimeout(0.1)
        self.port = self.lsock.getsockname()[1]
        self.released = threading.Event()
        self.closed = threading.Event()
        self.socks = []
        self.accepted = 0
        self.refusing = threading.Event()
        self.refused = 0
        self.threads = [threading.Thread(target=self._accept_loop, daemon=True)]
        self.threads[0].start()

    def url(self):
        return "tcp://%s:%d" % (HOST, self.port)

    def release(self):
        self.released.set()

    def cut(self):
        """Drops every connection through the proxy; new ones are closed at once until restore()."""
        self.refusing.set()
        for s in list(self.socks):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self):
        """Forwards new connections again (after cut())."""
        self.refusing.clear()

    def _accept_loop(self):
        import threading
        while not self.closed.is_set():
            try:
                c, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            if self.refusing.is_set():
                self.refused += 1
                c.close()
                continue
            self.accepted += 1
            self.socks.append(c)
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, c):
        import threading
        while not self.released.wait(0.05):
            if self.closed.is_set():
                return
        try:
            u = socket.create_connection((HOST, self.upstream_port), timeout=5)
        except OSError:
            c.close()
            return
        self.socks.append(u)

        def copy(src, dst):
            src.settimeout(0.2)
            while not self.closed.is_set():
                try:
                    data = src.recv(65536)
                except socket.timeout:
                    continue
                except OSError:
                    break
                if not data:
                    break
                try:
                    dst.sendall(data)
                except OSError:
                    break
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        t = threading.Thread(target=copy, args=(u, c), daemon=True)
        t.start()
        copy(c, u)
        t.join(2)

    def close(self):
        self.closed.set()
        try:
            self.lsock.close()
        except OSError:
            pass
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass
        for t in self.threads:
            t.join(2)
