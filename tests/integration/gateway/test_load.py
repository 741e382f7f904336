"""
Robustness: 1,000 connections opened and dropped (no descriptor leak), 500
malformed requests (400 or close, still serving), SIGTERM with 50 open
streams (exit 0 within 5 s, streams see EOF).
"""

import json
import os
import random
import signal
import socket
import struct
import time

import harness
from harness import GatewayTest, RawHTTP, SSEClient, http_request_bytes, publish, request, scaled

SEED = int(os.environ.get("ROOMCAST_TEST_SEED") or time.time())


def connect(port, rst=False):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(scaled(10))
    if rst:
        # close with a reset instead of a FIN
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.connect((harness.HOST, port))
    return s


class LoadTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway("--heartbeat-ms", "200")
        self.rng = random.Random(SEED)
        print("seed %d (ROOMCAST_TEST_SEED)" % SEED)

    def settled_fds(self):
        """The gateway's descriptor count once it stops changing."""
        proc = self.gw.proc
        last = [proc.fd_count()]

        def stable():
            time.sleep(0.1)
            n = proc.fd_count()
            same = n == last[0]
            last[0] = n
            return same
        harness.wait_until(stable, scaled(5), "the descriptor count to settle")
        return last[0]

    def test_1000_connections_dropped_no_fd_leak(self):
        port = self.gw.port
        request(port, "GET", "/healthz")
        baseline = self.settled_fds()
        kinds = [
            lambda s: None,                                              # connect, close
            lambda s: s.sendall(b"GET /api/v1/ev"),                      # half a request line
            lambda s: s.sendall(b"GET /api/v1/events?room_id=a HTTP/1.1\r\nHost: x\r\n"),  # half the headers
            lambda s: s.sendall(http_request_bytes("GET", "/api/v1/events?room_id=a")),     # a full stream request
            lambda s: s.sendall(http_request_bytes("GET", "/api/v1/events")),                 # a firehose request
            lambda s: s.sendall(b"POST /api/v1/events HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"ty"),  # half a body
            lambda s: s.sendall(http_request_bytes("GET", "/healthz")),  # a request whose answer is never read
            lambda s: (s.sendall(http_request_bytes("GET", "/api/v1/events?room_id=b")), s.recv(64)),  # a live stream
            lambda s: s.sendall(http_request_bytes("POST", "/api/v1/events", b'{"type":"drop"}',
                                                   {"Content-Type": "application/json"})),
        ]
        opened = 0
        batch = []
        t0 = time.monotonic()
        for i in range(1000):
            s = connect(port, rst=self.rng.random() < 0.3)
            opened += 1
            try:
                kinds[i % len(kinds)](s)
            except OSError:
                pass
            batch.append(s)
            # up to 50 at once, closed in random order
            if len(batch) >= 50 or i == 999:
                self.rng.shuffle(batch)
                for c in batch:
                    c.close()
                batch = []
        # streams that read their preamble first, then vanish
        for i in range(20):
            c = SSEClient(port, "/api/v1/events?room_id=a")
            c.open()
            c.close()
        elapsed = time.monotonic() - t0
        self.assertEqual(opened, 1000)

        def back_to_baseline():
            return self.gw.proc.fd_count() <= baseline
        harness.wait_until(back_to_baseline, scaled(15),
                           "the gateway's descriptors to return to %d (now %d)" % (baseline, self.gw.proc.fd_count()))
        m = harness.get_metrics(port)
        self.assertEqual(m["roomcast_streams_open"], 0, m)
        self.assertEqual(m["roomcast_connections_open"], 1, m)  # the /metrics request itself
        self.assertGreaterEqual(m["roomcast_connections_accepted_total"], 1020)
        # still serving. (The POSTs of dropped connections may still be on their way to the broker:
        # they are global events, so the new stream may see some of them first.)
        c = SSEClient(port, "/api/v1/events?room_id=a")
        self._clients.append(c)
        c.open()
        eid = publish(port, {"type": "t", "room_id": "a"})
        got = c.events_until(eid)
        self.assertEqual({json.loads(e.data)["type"] for e in got[:-1]} - {"drop"}, set(), got)
        print("1000 connections in %.2fs" % elapsed)

    def malformed_requests(self):
        """(bytes, must_be_400): structured bad requests must get a 400; random bytes may just close."""
        structured = [
            b"GET\r\n\r\n",
            b"GET /healthz HTTP/1.1 extra\r\n\r\n",
            b"GET /healthz FTP/1.1\r\n\r\n",
            b"G@T /healthz HTTP/1.1\r\n\r\n",
            b"get /healthz HTTP/1.1\r\n\r\n",
            b"GET /heal thz HTTP/1.1\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nHost localhost\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n: novalue-name\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nX-A\x00: 1\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nX-A: \x01\x02\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\n\x7f\r\n\r\n",
            b"POST /api/v1/events HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST /api/v1/events HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            b"POST /api/v1/events HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
            b"POST /api/v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # a TLS ClientHello
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        ]
        # http-parser (the parser SPEC mandates) is lenient here: these may be answered, or wait for
        # more input; with the input ended they must get a 400, an answer or a close, never a hang
        lenient = [
            b"GET /healthz\r\n\r\n",                                 # an HTTP/0.9 request line
            b"GET /healthz HTTP/9.9\r\n\r\n",                        # any one-digit version
            b"GET  /healthz HTTP/1.1\r\n\r\n",
            b"GET /healthz HTTP/1.1\r\nBad Header: x\r\n\r\n",
            b"POST /api/v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"ty\"XX",
            b"\r\n\r\nGET",                                           # empty lines before a request
        ]
        out = []
        for i in range(500):
            if i % 3 == 0:
                k = (i // 3) % (len(structured) + len(lenient))
                out.append((structured[k], True) if k < len(structured) else (lenient[k - len(structured)], False))
            elif i % 3 == 1:
                out.append((bytes(self.rng.randrange(256) for _ in range(self.rng.randrange(1, 300))), False))
            else:
                # a valid request with a few bytes flipped
                good = bytearray(http_request_bytes("GET", "/api/v1/events?room_id=a", headers={"X-K": "v"}))
                for _ in range(self.rng.randrange(1, 4)):
                    good[self.rng.randrange(len(good))] = self.rng.randrange(256)
                out.append((bytes(good), False))
        return out

    def test_500_malformed_requests(self):
        port = self.gw.port
        request(port, "GET", "/healthz")
        baseline = self.settled_fds()
        stats = {"400": 0, "close": 0, "other": 0}
        for data, must_400 in self.malformed_requests():
            c = RawHTTP(port)
            try:
                c.send(data)
                if not must_400:
                    # random bytes may be a valid prefix: end the input so the gateway decides
                    c.sock.shutdown(socket.SHUT_WR)
                try:
                    r = c.read_response()
                except (EOFError, ConnectionResetError):
                    r = None
                except socket.timeout:
                    self.fail("no answer and no close for %r" % (data,))
                if r is None:
                    self.assertFalse(must_400, "closed without a 400: %r" % (data,))
                    stats["close"] += 1
                elif r.status == 400:
                    self.assertJSONError(r, 400)
                    self.assertEqual(r.headers.get("connection", "").lower(), "close", data)
                    self.assertTrue(c.at_eof(scaled(5)), "closed after the 400: %r" % (data,))
                    stats["400"] += 1
                else:
                    # a flipped byte can leave a valid request (say, another header name): it is answered
                    self.assertFalse(must_400, "%r answered %r" % (data, r))
                    self.assertIn(r.status, (200, 404, 405, 431), (data, r))
                    stats["other"] += 1
            finally:
                c.close()
        print("malformed: %r" % stats)
        self.assertGreater(stats["400"], 200)
        # still serving, and nothing leaked
        self.assertEqual(request(port, "GET", "/healthz").status, 200)
        c = SSEClient(port, "/api/v1/events?room_id=a")
        self._clients.append(c)
        c.open()
        eid = publish(port, {"type": "t", "room_id": "a"})
        self.assertEqual(c.events(1)[0].id, eid)
        c.close()
        harness.wait_until(lambda: self.gw.proc.fd_count() <= baseline, scaled(15),
                           "the gateway's descriptors to return to %d" % baseline)

    def test_sigterm_with_50_open_streams(self):
        port = self.gw.port
        streams = []
        for i in range(50):
            path = "/api/v1/events" if i % 10 == 0 else "/api/v1/events?room_id=r%d" % (i % 7)
            c = SSEClient(port, path)
            self._clients.append(c)
            c.open()
            streams.append(c)
        eid = publish(port, {"type": "before.stop"})  # global: every stream
        for c in streams:
            self.assertEqual(c.events(1)[0].id, eid)
        # a keep-alive connection between requests, and one with half a request
        idle = RawHTTP(port)
        idle.send(http_request_bytes("GET", "/healthz"))
        self.assertEqual(idle.read_response().status, 200)
        half = RawHTTP(port)
        half.send(b"GET /healthz HTTP/1.1\r\n")
        self.addCleanup(idle.close)
        self.addCleanup(half.close)

        t0 = time.monotonic()
        self.gw.proc.signal(signal.SIGTERM)
        self.assertExitsOnSignal(self.gw.proc, 5.0)
        print("exited in %.2fs" % (time.monotonic() - t0))
        for i, c in enumerate(streams):
            self.assertTrue(c.wait_eof(scaled(2)), "stream %d sees the end" % i)
            self.assertFalse(c.reset, "stream %d was reset rather than closed" % i)
        self.assertTrue(idle.at_eof(scaled(2)))
        self.assertTrue(half.at_eof(scaled(2)))
        # nothing listens any more
        with self.assertRaises(OSError):
            socket.create_connection((harness.HOST, port), timeout=1).close()
        log = self.gw.proc.log()
        self.assertIn("stopping", log)

    def test_sigint_stops_too(self):
        c = SSEClient(self.gw.port, "/api/v1/events?room_id=a")
        self._clients.append(c)
        c.open()
        self.gw.proc.signal(signal.SIGINT)
        self.assertExitsOnSignal(self.gw.proc, 5.0)
        self.assertTrue(c.wait_eof(scaled(2)))


if __name__ == "__main__":
    harness.main()
