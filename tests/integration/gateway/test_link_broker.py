"""
The broker's side of the link (--link, docs/PROTOCOL.md "The link"), seen by
a raw TCP client that speaks its frames as a gateway loop would: the 'H'
frame first; a publish with an "ack" token answered by the bus index that
carries its events (a 'B' frame) and no 'R' frame; a refused publish (or any
other op) answered by an 'R' frame with the request's id; the same events on
the nng bus (roomcast tail); hostile input closes that connection only; a
client that never reads costs bounded memory and loses whole bus messages,
counted, while another client gets everything; --link-max-conns; and the
refusal of --store nats and --fsync always.
"""

import json
import os
import re
import socket
import struct
import subprocess
import threading
import time

import harness
from harness import BROKER_BIN, CLI_BIN, HOST, GatewayTest, scaled, wait_until

HDR = struct.Struct("<IB3xI")
HELLO = b"roomcast-link/1"
LINK_RE = re.compile(r'msg="broker ready" .*\blink=(\S+)')

FLAG_TICK, FLAG_INDEX, FLAG_WHOLE, FLAG_ACKS = 0x01, 0x08, 0x10, 0x20
FRAME_HDR = struct.Struct("<4sBBHQQI")  # magic, version, flags, reserved, epoch, last_gseq, count


def frame(kind, fid, payload):
    return HDR.pack(len(payload), ord(kind), fid) + payload


class LinkClient:
    """
    A raw link connection: reads whole frames, sends requests. rcvbuf fixes
    the receive buffer (no autotuning, which goes up to tcp_rmem's 32 MiB
    here); keep it above a loopback MSS (64 KiB): below, Linux can stall the
    connection on zero-window probes for many seconds.
    """

    def __init__(self, addr, rcvbuf=None):
        host, port = addr[len("tcp://"):].rsplit(":", 1)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(scaled(10))
        self.sock.connect((host, int(port)))
        self.buf = b""
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def request(self, fid, obj):
        self.send(frame("Q", fid, json.dumps(obj).encode()))

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no frame in time")
        self.sock.settimeout(left)
        data = self.sock.recv(1 << 20)
        if not data:
            self.eof = True
            raise EOFError("the broker closed the link connection")
        self.buf += data

    def read_frame(self, timeout=None):
        """(kind, id, payload) of the next frame."""
        deadline = time.monotonic() + (timeout if timeout is not None else scaled(10))
        while len(self.buf) < HDR.size:
            self._fill(deadline)
        n, kind, fid = HDR.unpack_from(self.buf)
        assert self.buf[5:8] == b"\0\0\0", self.buf[:12]
        while len(self.buf) < HDR.size + n:
            self._fill(deadline)
        payload = self.buf[HDR.size:HDR.size + n]
        self.buf = self.buf[HDR.size + n:]
        return chr(kind), fid, payload

    def hello(self):
        kind, fid, payload = self.read_frame()
        assert (kind, fid, payload) == ("H", 0, HELLO), (kind, fid, payload)

    def closed(self, timeout):
        """True once the broker closed the connection (EOF or reset) within timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except (EOFError, ConnectionResetError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def parse_bus(payload):
    """A bus message: dict with topic, flags, last_gseq, gseqs (events carried) and acks {(gw, req): [gseq]}."""
    nul = payload.index(b"\0")
    topic, body = payload[:nul + 1], payload[nul + 1:]
    magic, ver, flags, _, epoch, last, count = FRAME_HDR.unpack_from(body)
    assert magic == b"RCF1" and ver == 1, body[:8]
    out = {"topic": topic, "flags": flags, "epoch": epoch, "last_gseq": last, "gseqs": [], "acks": {}}
    end = len(body)
    if flags & FLAG_ACKS:
        alen = struct.unpack_from("<I", body, end - 4)[0]
        off = end - 4 - alen
        while off < end - 4:
            gw, req, n = struct.unpack_from("<QQI", body, off)
            out["acks"][(gw, req)] = list(struct.unpack_from("<%dQ" % n, body, off + 20))
            off += 20 + 8 * n
        end = end - 4 - alen
    pos = FRAME_HDR.size
    if flags & FLAG_INDEX:
        out["first_gseq"] = struct.unpack_from("<Q", body, pos)[0]
        pos += 8
        if not flags & FLAG_WHOLE:
            return out  # room entries: the events came in room frames before it
        _, _, _, _, _, _, count = FRAME_HDR.unpack_from(body, pos)
        pos += FRAME_HDR.size
    for _ in range(count):
        gseq, rseq, room_len, json_len = struct.unpack_from("<QQHI", body, pos)
        out["gseqs"].append(gseq)
        pos += 22 + room_len + json_len
    assert pos == end, (pos, end)
    return out


def harness_read(path):
    with open(path) as f:
        return f.read()


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))


def ack_token(gw, req):
    return "%016x-%d" % (gw, req)


class LinkBrokerTest(GatewayTest):
    def start(self, *extra):
        b = self.cluster.start_broker("--link", "tcp://%s:0" % HOST, *extra)
        m = LINK_RE.search(b.proc.log())
        self.assertIsNotNone(m, "no link= in the ready line")
        self.link = m.group(1)
        self.assertNotEqual(harness.url_port(self.link), 0, self.link)
        self.clients = []
        return b

    def client(self, **kw):
        c = LinkClient(self.link, **kw)
        self.clients.append(c)
        return c

    def tearDown(self):
        for c in getattr(self, "clients", []):
            c.close()
        super().tearDown()

    def stats(self):
        r = self.cluster.cli("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def read_until_ack(self, c, gw, req, seen=None):
        """Reads 'B' frames until the index holding (gw, req); an 'R' frame meanwhile fails. Returns its gseqs."""
        deadline = time.monotonic() + scaled(10)
        while True:
            kind, fid, payload = c.read_frame(deadline - time.monotonic())
            self.assertEqual(kind, "B", (kind, fid, payload))
            self.assertEqual(fid, 0)
            m = parse_bus(payload)
            if seen is not None:
                seen.extend(m["gseqs"])
            if (gw, req) in m["acks"]:
                return m["acks"][(gw, req)]

    def test_publish_answered_on_the_bus_refusal_with_a_reply(self):
        self.start()
        tail_err = open(os.path.join(self.cluster.dir, "tail.err"), "w+")
        tail = subprocess.Popen([CLI_BIN, "tail", "--count", "3", "--broker-bus", self.cluster.broker.bus,
                                 "--broker-api", self.cluster.broker.api], stdout=subprocess.PIPE,
                                stderr=tail_err, text=True)
        try:
            c = self.client()
            c.hello()
            # the bus says where it is at once (a tick), as for a new nng subscriber
            kind, _, payload = c.read_frame()
            self.assertEqual(kind, "B")
            self.assertTrue(parse_bus(payload)["flags"] & FLAG_TICK)
            wait_until(lambda: "tailing" in harness_read(tail_err.name), scaled(5), "tail to connect")
            time.sleep(0.3)  # tail logs 'tailing' as its pipe connects; a subscription settles right after
            gw = 0x1234abcd5678ef01
            events = [{"type": "t", "room_id": "a", "n": 1}, {"type": "t", "room_id": "b", "n": 2}]
            c.request(7, {"op": "publish", "ack": ack_token(gw, 1), "events": events})
            c.request(8, {"op": "ping"})
            # the ping's reply and the index with the publish's ack, in either order (the bus sender may be
            # busy with the tick and send the flush itself); no reply for the publish
            seen, gseqs, replies = [], None, []
            while gseqs is None or not replies:
                kind, fid, payload = c.read_frame()
                if kind == "R":
                    replies.append(fid)
                    self.assertTrue(json.loads(payload)["ok"])
                    continue
                self.assertEqual((kind, fid), ("B", 0))
                m = parse_bus(payload)
                seen.extend(m["gseqs"])
                gseqs = m["acks"].get((gw, 1), gseqs)
            self.assertEqual(replies, [8])
            self.assertEqual(len(gseqs), 2)
            self.assertEqual(sorted(seen), gseqs, "the events came on the link")

            # refusals are replies with the request's id, nothing published
            c.request(9, {"op": "publish", "ack": ack_token(gw, 2), "events": [{"type": "t", "room_id": "bad room"}]})
            kind, fid, payload = c.read_frame()
            self.assertEqual((kind, fid), ("R", 9), payload)
            self.assertEqual(json.loads(payload)["error"]["code"], "invalid_event", payload)
            c.request(10, {"op": "publish", "ack": ack_token(gw, 3),
                           "events": [{"type": "t", "room_id": "a", "x": "y" * 70000}]})
            kind, fid, payload = c.read_frame()
            self.assertEqual((kind, fid), ("R", 10), payload)
            self.assertEqual(json.loads(payload)["error"]["code"], "too_large", payload)
            # without a token a publish is answered with a reply
            c.request(11, {"op": "publish", "events": [{"type": "t", "room_id": "a", "n": 3}]})
            while True:
                kind, fid, payload = c.read_frame()
                if kind == "R":
                    break
            self.assertEqual(fid, 11)
            self.assertTrue(json.loads(payload)["ok"], payload)

            # the same three events on the nng bus
            out, _ = tail.communicate(timeout=scaled(10))
            self.assertEqual(tail.returncode, 0, harness_read(tail_err.name))
            lines = [json.loads(line) for line in out.splitlines()]
            self.assertEqual([ln["event"].get("n") for ln in lines], [1, 2, 3], out)

            st = self.stats()["link"]
            self.assertEqual(st["connections"], 1, st)
            self.assertEqual(st["requests"], 5, st)
            self.assertEqual(st["bus_messages_dropped"], 0, st)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.communicate()
            tail_err.close()

    def test_hostile_input_closes_that_connection_only(self):
        b = self.start()
        good = self.client()
        good.hello()
        bad_inputs = [
            ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
            ("a reply from a gateway", frame("R", 1, b"{}")),
            ("an unknown kind", frame("X", 1, b"{}")),
            ("reserved bytes", struct.pack("<IBBHI", 2, ord("Q"), 1, 0, 1) + b"{}"),
            ("request id 0", frame("Q", 0, b'{"op":"ping"}')),
            ("oversize", struct.pack("<IB3xI", 8 * 1024 * 1024 + 1, ord("Q"), 1)),  # --api-max-bytes 8 MiB
        ]
        for what, data in bad_inputs:
            c = self.client()
            c.hello()
            c.send(data)
            self.assertTrue(c.closed(scaled(5)), what)
        wait_until(lambda: b.proc.log().count('msg="link connection closed"') >= len(bad_inputs), scaled(5),
                   "a warning per closed connection")
        self.assertIn("peer=127.0.0.1:", b.proc.log())
        # the good client and the api go on
        good.request(1, {"op": "publish", "events": [{"type": "t", "room_id": "a"}]})
        while True:
            kind, fid, payload = good.read_frame()
            if kind == "R":
                break
        self.assertEqual(fid, 1)
        self.assertTrue(json.loads(payload)["ok"], payload)
        self.assertEqual(self.stats()["link"]["connections"], 1)

    def test_a_client_that_never_reads(self):
        b = self.start("--link-buffer-bytes", os.environ.get("LINK_TEST_BUFFER", "1MiB"), "--history-events", "1000")
        slow = self.client(rcvbuf=65536)
        good = self.client()
        good.hello()
        rss_before = rss_kib(b.proc.pid)
        gw = 0x42
        total, batch, seen = 20000, 100, []
        body = "z" * 2000
        for req in range(1, total // batch + 1):
            events = [{"type": "t", "room_id": "r%d" % (i % 50), "b": body} for i in range(batch)]
            good.request(req, {"op": "publish", "ack": ack_token(gw, req), "events": events})
            self.read_until_ack(good, gw, req, seen)
        self.assertEqual(len(seen), total)
        self.assertEqual(sorted(seen), list(range(seen[0], seen[0] + total)), "no hole for the reading client")
        st = self.stats()["link"]
        self.assertGreater(st["bus_messages_dropped"], 0, st)
        # ~40 MB went by; the history keeps 1,000 events (~2 MB), the slow client's buffer at most 1 MiB and a
        # message (without the limit it would hold ~36 MB: all the kernel did not take). ASan keeps what is
        # freed in its quarantine: the figure means nothing there.
        grown = rss_kib(b.proc.pid) - rss_before
        if not harness.SANITIZED:
            self.assertLess(grown, 16 * 1024, "broker RSS growth (KiB)")
        # what the slow client gets is whole frames: the hello, then bus messages with holes but never a cut
        slow.hello()
        got = 0
        while True:
            kind, fid, payload = slow.read_frame()
            self.assertEqual((kind, fid), ("B", 0))
            m = parse_bus(payload)
            got += 1
            # once it reads, the idle ticks reach it: the one after the last event ends the test
            if m["flags"] & FLAG_TICK and m["last_gseq"] == max(seen):
                break
        self.assertGreater(got, 0)
        self.assertEqual(slow.buf, b"", "a partial frame")

    def test_replies_wait_never_dropped(self):
        # a client that sends and does not read: past the limit the broker stops reading it, then goes on
        # no idle tick meanwhile: it would be dropped for this connection over its limit, rightly
        self.start("--link-buffer-bytes", "64KiB", "--bus-tick-ms", "60000")
        c = self.client(rcvbuf=65536)
        c.hello()
        n = 20000
        data = b"".join(frame("Q", i, b'{"op":"stats"}') for i in range(1, n + 1))
        failed = []

        def send():
            try:
                c.sock.settimeout(scaled(30))
                c.sock.sendall(data)
            except OSError as e:
                failed.append(e)
        t = threading.Thread(target=send)
        t.start()
        try:
            # the replies fill the kernel's buffers and the limit: the broker stops taking requests
            last = [-1]

            def paused():
                done = self.stats()["link"]["requests"]
                still, last[0] = done == last[0], done
                return still and done < n
            wait_until(paused, scaled(20), "the broker to stop reading requests", interval=0.2)
            ids = []
            while len(ids) < n:
                kind, fid, payload = c.read_frame()
                if kind == "R":
                    ids.append(fid)
        finally:
            t.join(scaled(30))
        self.assertEqual(failed, [])
        self.assertEqual(ids, list(range(1, n + 1)))
        self.assertEqual(self.stats()["link"]["bus_messages_dropped"], 0)

    def test_stop_closes_the_link(self):
        b = self.start()
        c = self.client()
        c.hello()
        c.request(1, {"op": "publish", "ack": ack_token(5, 1), "events": [{"type": "t", "room_id": "a"}]})
        self.read_until_ack(c, 5, 1)
        b.proc.signal(harness.signal.SIGTERM)
        # whole frames, then the broker closes the connection; it exits 0
        try:
            while True:
                kind, fid, _ = c.read_frame()
                self.assertEqual((kind, fid), ("B", 0))
        except (EOFError, ConnectionResetError):
            pass
        self.assertEqual(c.buf, b"", "a partial frame at the close")
        self.assertExitsOnSignal(b.proc, scaled(10))

    def test_max_conns(self):
        self.start("--link-max-conns", "1")
        first = self.client()
        first.hello()
        second = self.client()
        self.assertTrue(second.closed(scaled(5)))
        self.assertEqual(second.buf, b"", "no hello beyond --link-max-conns")
        first.request(1, {"op": "ping"})
        kind, fid, _ = first.read_frame()
        while kind == "B":
            kind, fid, _ = first.read_frame()
        self.assertEqual((kind, fid), ("R", 1))

    def test_out_of_descriptors_does_not_spin(self):
        """
        accept(2) failing with EMFILE leaves the connection in the backlog and
        the listening socket readable: the link thread must not spin on it,
        and it accepts again once descriptors are free.
        """
        argv = ["prlimit", "--nofile=48:48", "--", BROKER_BIN, "--bus", "tcp://%s:0" % HOST, "--api",
                "tcp://%s:0" % HOST, "--link", "tcp://%s:0" % HOST]
        p = self.cluster._start("broker", argv)
        bus, api = harness.wait_broker(p)
        self.cluster.broker = harness.Broker(p, bus, api)
        self.link = LINK_RE.search(p.log()).group(1)
        self.clients = []
        free = 48 - p.fd_count()
        held = []
        for _ in range(free + 4):  # the last ones wait in the backlog: accept fails with EMFILE
            held.append(self.client())
        wait_until(lambda: "out of file descriptors" in p.log(), scaled(10), "the EMFILE log line")

        def ticks():
            with open("/proc/%d/stat" % p.pid) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return int(fields[11]) + int(fields[12])  # utime + stime
        t0, c0 = time.monotonic(), ticks()
        time.sleep(2)
        used = (ticks() - c0) / os.sysconf("SC_CLK_TCK") / (time.monotonic() - t0)
        self.assertLess(used, 0.25, "the broker spins while accept fails (%.0f %% of a core)" % (100 * used))
        self.assertEqual(p.log().count("out of file descriptors"), 1, "logged once while it lasts")
        for c in held:
            c.close()
        self.clients = []
        c = self.client()
        c.hello()

    def test_refused_with_stores_that_wait(self):
        any_port = "tcp://127.0.0.1:0"
        cases = [
            (any_port, ["--store", "nats", "--nats-url", "nats://127.0.0.1:1"], "--store nats"),
            (any_port, ["--data-dir", os.path.join(self.cluster.dir, "d"), "--fsync", "always"], "--fsync always"),
            ("nonsense", [], "tcp://host:port"),
            ("tcp://127.0.0.1:99999", [], "tcp://host:port"),
        ]
        for link, extra, says in cases:
            r = subprocess.run([BROKER_BIN, "--bus", any_port, "--api", any_port, "--link", link] + extra,
                               capture_output=True, text=True, timeout=scaled(10))
            self.assertEqual(r.returncode, 1, (link, extra, r.stderr))
            self.assertIn(says, r.stderr, extra)
        # the file store with --fsync interval takes it
        self.start("--data-dir", os.path.join(self.cluster.dir, "ok"), "--fsync", "interval")
        c = self.client()
        c.hello()


if __name__ == "__main__":
    harness.main()
