"""
The gateway's side of the link (--broker-link, docs/PROTOCOL.md "The link"):
one TCP connection per gateway loop carrying its publishes ('Q' frames,
answered by 'R' or the bus ACKS block) and every bus message ('B').

LinkFakeTest: against a fake link broker written here (FakeLink: it sends
the hello, builds bus frames, answers requests) for what a real broker
never does: garbage, no hello, an oversize frame, a link that drops and
comes back, a request never answered. The api (replays, acks) is a real
broker's.

LinkBrokerTest: against the real broker's --link: streams get what is
published over the link (answered on the bus, not by api replies), a
refusal is the broker's, a broker stopped and started again: POSTs 503
meanwhile, streams go on without a loss (repair by replay).
"""

import json
import os
import re
import socket
import struct
import threading
import time

import harness
from harness import GatewayTest, get_metrics, post_json, request, scaled

HELLO = b"roomcast-link/1"
FRAME_INDEX, FRAME_TICK, FRAME_WHOLE = 0x08, 0x01, 0x10


def link_frame(kind, ident, payload):
    return struct.pack("<IB3xI", len(payload), ord(kind), ident) + payload


def frame_hdr(flags, epoch, last, count):
    return b"RCF1" + struct.pack("<BBHQQI", 1, flags, 0, epoch, last, count)


class FakeConn:
    def __init__(self, link, sock):
        self.link = link
        self.sock = sock
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def send(self, data):
        with self.lock:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed.set()

    def close(self):
        self.closed.set()
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class FakeLink:
    """
    A link broker on 127.0.0.1:0. Each connection gets `greeting` (by
    default the hello and a tick of `epoch`); 'Q' publishes are answered
    by answer(conn, req_id, request) (default: published, their events
    sent to every connection as one whole flush, then an 'R' with the ids).
    """

    def __init__(self, epoch=0x5eed1, greeting=None, answer=None):
        self.epoch = epoch
        self.gseq = 0
        self.rseq = {}
        self.requests = []
        self.conns = []
        self.connects = 0
        self.greeting = greeting
        self.answer = answer or self.publish_and_reply
        self.lock = threading.Lock()
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(16)
        self.port = self.srv.getsockname()[1]
        self.url = "tcp://127.0.0.1:%d" % self.port
        self.accepting = True
        self.stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    # -- bus messages --
    def tick(self):
        return b"i\0" + frame_hdr(FRAME_INDEX | FRAME_TICK, self.epoch, self.gseq, 0) + struct.pack("<Q", self.gseq + 1)

    def flush(self, events):
        """A whole flush of events [(room, json bytes)], the next gseqs."""
        first = self.gseq + 1
        body = b""
        for room, data in events:
            self.gseq += 1
            self.rseq[room] = self.rseq.get(room, 0) + 1
            r = room.encode()
            body += struct.pack("<QQHI", self.gseq, self.rseq[room], len(r), len(data)) + r + data
        return (b"i\0" + frame_hdr(FRAME_INDEX | FRAME_WHOLE, self.epoch, self.gseq, 0) + struct.pack("<Q", first) +
                frame_hdr(0, self.epoch, self.gseq, len(events)) + body)

    def broadcast(self, msg):
        for c in list(self.conns):
            if not c.closed.is_set():
                c.send(link_frame("B", 0, msg))

    def publish_and_reply(self, conn, ident, req):
        with self.lock:
            events = []
            for e in req["events"]:
                e = dict(e)
                e.pop("key", None)
                events.append((e.get("room_id", ""), json.dumps(e, separators=(",", ":")).encode()))
            msg = self.flush(events)
            ids = ["%x-%d" % (self.epoch, g) for g in range(self.gseq - len(events) + 1, self.gseq + 1)]
            self.broadcast(msg)
        conn.send(link_frame("R", ident, json.dumps({"ok": True, "ids": ids}).encode()))

    # -- connections --
    def _accept(self):
        while not self.stopped:
            try:
                s, _ = self.srv.accept()
            except OSError:
                return
            if not self.accepting:
                s.close()
                continue
            c = FakeConn(self, s)
            with self.lock:
                self.connects += 1
                self.conns.append(c)
                greeting = self.greeting if self.greeting is not None else link_frame("H", 0, HELLO) + link_frame(
                    "B", 0, self.tick())
            c.send(greeting)
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    def _serve(self, c):
        buf = b""
        while not c.closed.is_set():
            try:
                data = c.sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            buf += data
            while len(buf) >= 12:
                n, kind, ident = struct.unpack("<IB3xI", buf[:12])
                if len(buf) < 12 + n:
                    break
                payload, buf = buf[12:12 + n], buf[12 + n:]
                req = json.loads(payload)
                self.requests.append((chr(kind), ident, req))
                self.answer(c, ident, req)
        c.closed.set()

    def live(self):
        return [c for c in self.conns if not c.closed.is_set()]

    def drop_all(self):
        for c in list(self.conns):
            c.close()

    def stop(self):
        self.stopped = True
        self.srv.close()
        self.drop_all()


class LinkFakeTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.fakes = []

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for f in self.fakes:
                f.stop()

    def fake(self, **kw):
        f = FakeLink(**kw)
        self.fakes.append(f)
        return f

    def gateway(self, link, *extra, ready=True):
        broker = self.cluster.broker or self.cluster.start_broker()
        return self.cluster.start_gateway("--broker-link", link.url, *extra, broker=broker, ready=ready)

    def ready(self, gw):
        return request(gw.port, "GET", "/readyz", timeout=2)

    def test_events_and_publishes_travel_over_the_link(self):
        link = self.fake()
        gw = self.gateway(link)
        self.assertEqual(len(link.live()), 1, "one link connection for the one loop")
        c = self.sse(gw, "/api/v1/events?room_id=a")
        r = post_json(gw.port, {"type": "hello", "room_id": "a", "data": {"n": 1}})
        self.assertEqual(r.status, 201, r)
        got = c.events(1)[0]
        self.assertEqual(r.json()["id"], got.id, "the id the 'R' reply named is the stream's")
        self.assertEqual(got.id, "%x-1" % link.epoch)
        self.assertEqual(json.loads(got.data)["type"], "hello")
        kind, ident, req = link.requests[0]
        self.assertEqual((kind, req["op"]), ("Q", "publish"))
        self.assertNotEqual(ident, 0)
        self.assertIn("ack", req, "the link counts as the bus: the publish asks for its answer on it")
        # an array publish is one request; the stream gets all of it in order
        r = post_json(gw.port, [{"type": "many", "room_id": "a", "i": i} for i in range(5)])
        self.assertEqual(r.status, 201, r)
        self.assertEqual([e.id for e in c.events(5)], r.json()["ids"])
        m = get_metrics(gw.port)
        self.assertEqual(m["roomcast_gateway_link_connected"], 1)
        self.assertEqual(m["roomcast_gateway_link_connects_total"], 1)

    def test_refused_publish_gets_the_brokers_error(self):
        def refuse(conn, ident, req):
            conn.send(link_frame("R", ident, json.dumps(
                {"ok": False, "error": {"code": "invalid_event", "message": "room_id: refused by the fake"}}).encode()))
        link = self.fake(answer=refuse)
        gw = self.gateway(link)
        r = post_json(gw.port, {"type": "x", "room_id": "a"})
        self.assertJSONError(r, 400, "invalid_event", "refused by the fake")
        self.assertEqual(self.ready(gw).status, 200, "a refusal is no failure of the link")

    def test_unanswered_publish_ends_504_by_its_timeout(self):
        link = self.fake(answer=lambda conn, ident, req: None)
        gw = self.gateway(link, "--publish-timeout-ms", "400")
        t0 = time.monotonic()
        r = post_json(gw.port, {"type": "x", "room_id": "a"})
        self.assertJSONError(r, 504, "publish_outcome_unknown")
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)
        # the link is still up and the next publish is sent
        r = post_json(gw.port, {"type": "y", "room_id": "a"})
        self.assertEqual(r.status, 504)
        self.assertEqual(len(link.requests), 2)

    def test_no_hello_not_ready(self):
        silent = self.fake(greeting=b"")
        gw = self.gateway(silent, ready=False)
        harness.wait_until(lambda: silent.connects >= 1, scaled(5), "the gateway to connect")
        r = self.ready(gw)
        self.assertEqual(r.status, 503, r)
        self.assertFalse(r.json()["broker_bus"])
        self.assertJSONError(post_json(gw.port, {"type": "x", "room_id": "a"}), 503, "broker_unavailable")
        self.assertEqual(silent.requests, [], "nothing is sent before the hello")

    def test_wrong_first_frame_closes_and_retries(self):
        for name, greeting in [("a bus frame first", link_frame("B", 0, b"i\0")),
                               ("another hello", link_frame("H", 0, b"roomcast-link/9")),
                               ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")]:
            with self.subTest(name):
                bad = self.fake(greeting=greeting)
                gw = self.gateway(bad, ready=False)
                harness.wait_until(lambda: bad.connects >= 3, scaled(10),
                                   "the gateway to close and dial again (%s)" % name)
                self.assertEqual(self.ready(gw).status, 503)
                self.assertIn("not a roomcast link", gw.proc.log())
                self.assertEqual(gw.proc.stop(), 0)

    def test_hostile_frames_after_the_hello_close_and_reconnect(self):
        cases = [
            ("garbage", b"\xff" * 64),
            ("oversize length", struct.pack("<IB3xI", 0xFFFFFFF0, ord("B"), 0)),
            ("a request from the broker", link_frame("Q", 7, b"{}")),
            ("reserved bytes", struct.pack("<IBBHI", 0, ord("B"), 1, 0, 0)),
            ("a second hello", link_frame("H", 0, HELLO)),
        ]
        link = self.fake()
        gw = self.gateway(link)
        c = self.sse(gw, "/api/v1/events?room_id=a")
        for i, (name, data) in enumerate(cases):
            with self.subTest(name):
                before = link.connects
                link.live()[0].send(data)
                harness.wait_until(lambda: link.connects > before, scaled(10),
                                   "the gateway to drop the link and dial again after %s" % name)
                harness.wait_until(lambda: self.ready(gw).status == 200, scaled(10), "ready again")
                r = post_json(gw.port, {"type": "after", "room_id": "a", "i": i})
                self.assertEqual(r.status, 201, r)
                self.assertEqual(c.events(1)[0].id, r.json()["id"], "the stream goes on after %s" % name)
        self.assertTrue(gw.proc.alive())
        m = get_metrics(gw.port)
        self.assertEqual(m["roomcast_gateway_link_connects_total"], 1 + len(cases))

    def test_link_down_posts_503_then_back(self):
        link = self.fake()
        gw = self.gateway(link)
        c = self.sse(gw, "/api/v1/events?room_id=a")
        first = post_json(gw.port, {"type": "before", "room_id": "a"})
        self.assertEqual(first.status, 201)
        self.assertEqual(c.events(1)[0].id, first.json()["id"])
        link.accepting = False
        link.drop_all()
        harness.wait_until(lambda: self.ready(gw).status == 503, scaled(5), "not ready without the link")
        r = post_json(gw.port, {"type": "meanwhile", "room_id": "a"})
        self.assertJSONError(r, 503, "broker_unavailable")
        self.assertEqual(get_metrics(gw.port)["roomcast_gateway_link_connected"], 0)
        link.accepting = True
        harness.wait_until(lambda: self.ready(gw).status == 200, scaled(10), "ready once the link is back")
        r = post_json(gw.port, {"type": "after", "room_id": "a"})
        self.assertEqual(r.status, 201, r)
        got = c.events(1)[0]
        self.assertEqual(got.id, r.json()["id"], "the stream stayed open and goes on")
        self.assertEqual(json.loads(got.data)["type"], "after")
        self.assertEqual(get_metrics(gw.port)["roomcast_gateway_link_connects_total"], 2)

    def test_each_worker_has_its_own_link(self):
        link = self.fake()
        gw = self.gateway(link, "--workers", "2")
        harness.wait_until(lambda: len(link.live()) == 2, scaled(5), "two link connections")
        # the other loop's figures reach /metrics with its next snapshot
        harness.wait_until(lambda: get_metrics(gw.port)["roomcast_gateway_link_connected"] == 2, scaled(5),
                           "both loops' links counted as up")
        c = self.sse(gw, "/api/v1/events")
        ids = [post_json(gw.port, {"type": "w", "room_id": "r%d" % i}).json()["id"] for i in range(6)]
        self.assertEqual([e.id for e in c.events(6)], ids)

    def test_options_refused(self):
        self.cluster.start_broker()
        b = self.cluster.broker
        for args, why in [
            (["--broker-link", "tcp://127.0.0.1:1", "--broker-api", b.api + "," + b.api], "one --broker-api"),
            (["--broker-link", "127.0.0.1:1"], "tcp://host:port"),
        ]:
            with self.subTest(why):
                argv = [harness.GATEWAY_BIN, "--listen", "127.0.0.1:0", "--broker-api", b.api] + args
                p = harness.subprocess.run(argv, capture_output=True, text=True, timeout=scaled(10))
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(why, p.stderr)


LINK_RE = re.compile(r'msg="broker ready" .*\blink=(\S+)')


class LinkBrokerTest(GatewayTest):
    def start_broker(self, *extra, link=None, bus=None, api=None):
        b = self.cluster.start_broker("--link", link or "tcp://127.0.0.1:0", *extra, bus=bus, api=api)
        m = LINK_RE.search(b.proc.log())
        self.assertIsNotNone(m, "no link= in the broker's ready line")
        b.link = m.group(1)
        return b

    def gateway(self, b, *extra):
        return self.cluster.start_gateway("--broker-link", b.link, *extra, broker=b)

    def stats(self):
        r = self.cluster.cli("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_publish_and_stream_over_the_link(self):
        b = self.start_broker()
        gw = self.gateway(b)
        room = self.sse(gw, "/api/v1/events?room_id=a")
        fire = self.sse(gw, "/api/v1/events")
        ids = []
        for i in range(20):
            r = post_json(gw.port, {"type": "one", "room_id": "a" if i % 2 else "b", "i": i})
            self.assertEqual(r.status, 201, r)
            ids.append(r.json()["id"])
        r = post_json(gw.port, [{"type": "many", "room_id": "a", "i": i} for i in range(50)])
        self.assertEqual(r.status, 201, r)
        ids += r.json()["ids"]
        self.assertEqual([e.id for e in fire.events(70)], ids, "the firehose: everything, in order")
        self.assertEqual([e.id for e in room.events(60)], ids[1:20:2] + ids[20:], "room a: its own, in order")
        st = self.stats()["link"]
        self.assertEqual(st["connections"], 1)
        self.assertGreaterEqual(st["requests"], 21, "the publishes went over the link")
        m = get_metrics(gw.port)
        self.assertEqual(m["roomcast_gateway_link_connected"], 1)
        self.assertEqual(m['roomcast_gateway_bus_connected{broker="0"}'], 1)
        self.assertEqual(m.get("roomcast_publish_acks_asked_total", 0), 0, "answered on the bus, never asked")

    def test_large_flushes_of_many_rooms(self):
        # flushes past --bus-frame-bytes go as a frame per room and an index: over the link the gateway
        # gets every room's frames and keeps those it serves
        b = self.start_broker()
        gw = self.gateway(b)
        one = self.sse(gw, "/api/v1/events?room_id=r7")
        fire = self.sse(gw, "/api/v1/events")
        pad = "x" * 400
        ids = []
        for k in range(3):
            r = post_json(gw.port, [{"type": "big", "room_id": "r%d" % (i % 40), "i": i, "pad": pad}
                                    for i in range(k * 400, (k + 1) * 400)])
            self.assertEqual(r.status, 201, r)
            ids += r.json()["ids"]
        self.assertEqual([e.id for e in fire.events(1200, timeout=scaled(20))], ids)
        mine = [ids[i] for i in range(1200) if i % 40 == 7]
        got = one.events(len(mine), timeout=scaled(20))
        self.assertEqual([e.id for e in got], mine)
        self.assertTrue(all(json.loads(e.data)["room_id"] == "r7" for e in got))
        self.assertEqual(get_metrics(gw.port).get("roomcast_gaps_detected_total", 0), 0)

    def test_concurrent_publishers_two_loops(self):
        b = self.start_broker()
        gw = self.gateway(b, "--workers", "2")
        harness.wait_until(lambda: self.stats()["link"]["connections"] == 2, scaled(5), "two link connections")
        fire = [self.sse(gw, "/api/v1/events") for _ in range(2)]
        room = self.sse(gw, "/api/v1/events?room_id=k1")
        published = harness.publish_concurrently(
            gw.port, 6, 30, lambda k, i: [{"type": "c", "room_id": "k%d" % k, "i": i, "j": j} for j in range(3)])
        ids = [i for i, _ in published]
        self.assertEqual(len(ids), 540)
        for f in fire:
            self.assertEqual([e.id for e in f.events(540, timeout=scaled(20))], ids)
        mine = [i for i, e in published if e["room_id"] == "k1"]
        self.assertEqual([e.id for e in room.events(len(mine), timeout=scaled(20))], mine)
        self.assertGreaterEqual(self.stats()["link"]["requests"], 1)

    def test_refusal_is_the_brokers(self):
        b = self.start_broker("--max-rooms", "1")
        gw = self.gateway(b)
        self.assertEqual(post_json(gw.port, {"type": "x", "room_id": "a"}).status, 201)
        self.assertJSONError(post_json(gw.port, {"type": "x", "room_id": "b"}), 503, "too_many_rooms")
        self.assertEqual(post_json(gw.port, {"type": "x", "room_id": "a"}).status, 201, "and the link goes on")

    def test_workers_each_their_link(self):
        b = self.start_broker()
        gw = self.gateway(b, "--workers", "2")
        harness.wait_until(lambda: self.stats()["link"]["connections"] == 2, scaled(5), "two link connections")
        fire = self.sse(gw, "/api/v1/events")
        ids = [post_json(gw.port, {"type": "w", "room_id": "r%d" % i}).json()["id"] for i in range(10)]
        self.assertEqual([e.id for e in fire.events(10)], ids)

    def test_broker_restart_posts_503_streams_lose_nothing(self):
        data = os.path.join(self.cluster.dir, "data")
        b = self.start_broker("--data-dir", data)
        gw = self.gateway(b)
        room = self.sse(gw, "/api/v1/events?room_id=a")
        before = [post_json(gw.port, {"type": "before", "room_id": "a", "i": i}).json()["id"] for i in range(5)]
        self.assertEqual([e.id for e in room.events(5)], before)

        self.assertEqual(b.proc.stop(), 0)
        harness.wait_until(lambda: request(gw.port, "GET", "/readyz", timeout=2).status == 503, scaled(5),
                           "not ready without the broker")
        self.assertJSONError(post_json(gw.port, {"type": "meanwhile", "room_id": "a"}), 503, "broker_unavailable")
        self.assertEqual(get_metrics(gw.port)["roomcast_gateway_link_connected"], 0)

        # meanwhile the broker, elsewhere (addresses the gateway does not know), publishes: a hole to repair
        elsewhere = self.start_broker("--data-dir", data)
        missed = []
        for i in range(5):
            r = self.cluster.cli("publish", "--room", "a", "--type", "while.away")
            self.assertEqual(r.returncode, 0, r.stderr)
            missed.append(r.stdout.strip())
        self.assertEqual(elsewhere.proc.stop(), 0)
        self.assertEqual(get_metrics(gw.port)["roomcast_gateway_link_connects_total"], 1)

        b2 = self.start_broker("--data-dir", data, link=b.link, bus=b.bus, api=b.api)
        harness.wait_until(lambda: request(gw.port, "GET", "/readyz", timeout=2).status == 200, scaled(10),
                           "ready once the link is back")

        def post_when_accepted():
            r = post_json(gw.port, {"type": "after", "room_id": "a"})
            return r.json()["id"] if r.status == 201 else None
        after = harness.wait_until(post_when_accepted, scaled(10), "a publish over the new link")
        got = room.events_until(after, timeout=scaled(15))
        self.assertEqual([e.id for e in got], missed + [after], "nothing lost, nothing twice, no reset")
        self.assertEqual(harness.parse_id(after)[0], harness.parse_id(before[0])[0], "the same epoch (file store)")
        m = get_metrics(gw.port)
        self.assertEqual(m["roomcast_gateway_link_connects_total"], 2)
        self.assertGreaterEqual(m["roomcast_gaps_detected_total"], 1)
        self.assertGreaterEqual(m["roomcast_events_repaired_total"], 5, "the missed events came by replay")
        self.assertEqual(self.stats()["link"]["connections"], 1)
        self.assertIsNotNone(b2)


if __name__ == "__main__":
    harness.main()
