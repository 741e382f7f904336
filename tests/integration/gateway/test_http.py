"""
HTTP behaviour of the gateway outside publishing: subscribe errors (400, 403,
404, 405, 431), CORS, /healthz, /readyz, /metrics (bus messages dropped by a
loop that fell behind included), keep-alive, pipelining, --max-conns.
"""

import json
import re
import signal
import time

import harness
from harness import GatewayTest, RawHTTP, SSEClient, http_request_bytes, publish, request, scaled


class SubscribeErrorTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway("--max-rooms-per-stream", "4")

    def get(self, path, headers=None):
        return request(self.gw.port, "GET", path, headers=headers)

    def test_bad_room_id_is_400(self):
        for q in ["room_id=bad%20room", "room_id=", "room_id=a,,b", "room_id=a,", "room_id=" + "x" * 129,
                  "room_id=a/b", "room_id=%C3%A9", "room_id=ok&room_id=no!pe", "room_id=a%00b"]:
            with self.subTest(q=q):
                self.assertJSONError(self.get("/api/v1/events?" + q), 400, "invalid_room_id")
        # the boundaries are accepted: 128 bytes and the whole alphabet
        for q in ["room_id=" + "x" * 128, "room_id=Az09._:@-"]:
            c = self.sse(self.gw, "/api/v1/events?" + q, open=False)
            self.assertEqual(c.read_head(), 200, q)

    def test_too_many_rooms_is_400(self):
        for q in ["room_id=a,b,c,d,e", "room_id=a&room_id=b&room_id=c&room_id=d&room_id=e",
                  "room_id=a,b&room_id=c,d,e"]:
            with self.subTest(q=q):
                self.assertJSONError(self.get("/api/v1/events?" + q), 400, "too_many_rooms")
        # exactly --max-rooms-per-stream is fine; repeats of one room count once
        c = self.sse(self.gw, "/api/v1/events?room_id=a,b,c,d&room_id=a,d", open=False)
        self.assertEqual(c.read_head(), 200)

    def test_bad_query_encoding_is_400(self):
        for q in ["room_id=%zz", "room_id=%4", "room_id=a%", "room_%zzid=a", "last_event_id=%g1"]:
            with self.subTest(q=q):
                self.assertJSONError(self.get("/api/v1/events?" + q), 400)
        # well-formed encoding decodes: room%5Fid=a%2Cb is room_id=a,b
        c = self.sse(self.gw, "/api/v1/events?room%5Fid=a%2Cb")
        eid = publish(self.gw.port, {"type": "t", "room_id": "b"})
        self.assertEqual(c.events(1)[0].id, eid)

    def test_unknown_path_is_404(self):
        for path in ["/", "/nope", "/api/v1/event", "/api/v1/events/extra", "/api/v2/events", "/healthz/x"]:
            with self.subTest(path=path):
                self.assertJSONError(self.get(path), 404, "not_found")
        self.assertJSONError(request(self.gw.port, "POST", "/api/v1/nope", body=b"{}",
                                     headers={"Content-Type": "application/json"}), 404)

    def test_wrong_method_is_405_with_allow(self):
        for method in ["DELETE", "PUT", "PATCH"]:
            with self.subTest(method=method):
                r = request(self.gw.port, method, "/api/v1/events", body=b"")
                self.assertJSONError(r, 405)
                allow = [m.strip() for m in r.headers.get("allow", "").split(",")]
                self.assertIn("GET", allow, r)
                self.assertIn("POST", allow, r)
        r = request(self.gw.port, "POST", "/healthz", body=b"")
        self.assertJSONError(r, 405)
        self.assertIn("GET", r.headers.get("allow", ""), r)
        r = request(self.gw.port, "DELETE", "/api/v1/im/events")
        self.assertJSONError(r, 405)

    def test_headers_over_16k_are_431(self):
        # the default --max-header-bytes is 16 KiB (the largest stream URL is 8,278 bytes)
        r = self.get("/api/v1/events?room_id=a", headers={"X-Big": "a" * 17000})
        self.assertJSONError(r, 431)
        r = self.get("/healthz", headers={"X-H%d" % i: "v" * 100 for i in range(170)})
        self.assertJSONError(r, 431)
        # a long URL counts too
        r = self.get("/api/v1/events?room_id=a&pad=" + "p" * 17000)
        self.assertJSONError(r, 431)
        # just under the limit is fine
        self.assertEqual(self.get("/healthz", headers={"X-Big": "a" * 15000}).status, 200)

    def test_firehose_is_403_with_no_firehose(self):
        gw = self.cluster.start_gateway("--no-firehose")
        for path in ["/api/v1/events", "/api/v1/im/events", "/api/v1/events?other=1"]:
            with self.subTest(path=path):
                self.assertJSONError(request(gw.port, "GET", path), 403)
        c = self.sse(gw, "/api/v1/events?room_id=a")
        eid = publish(gw.port, {"type": "t", "room_id": "a"})
        self.assertEqual(c.events(1)[0].id, eid)

    def test_errors_do_not_count_as_streams(self):
        self.get("/api/v1/events?room_id=%zz")
        self.get("/api/v1/events?room_id=a,b,c,d,e")
        m = harness.get_metrics(self.gw.port)
        self.assertEqual(m["roomcast_streams_open"], 0)
        self.assertGreaterEqual(m['roomcast_http_responses_total{status="400"}'], 2)


class OpsTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()

    def test_healthz_readyz(self):
        gw = self.cluster.start_gateway()
        r = request(gw.port, "GET", "/healthz")
        self.assertEqual(r.status, 200)
        r = request(gw.port, "GET", "/readyz")
        self.assertEqual(r.status, 200)

    def test_readyz_is_503_without_a_broker(self):
        gw = self.cluster.start_gateway(bus="tcp://127.0.0.1:%d" % harness.free_port(),
                                        api="tcp://127.0.0.1:%d" % harness.free_port(), ready=False)
        self.assertEqual(request(gw.port, "GET", "/healthz").status, 200)
        r = request(gw.port, "GET", "/readyz")
        self.assertEqual(r.status, 503, r)

    def test_metrics_prometheus_text(self):
        gw = self.cluster.start_gateway("--heartbeat-ms", "100")
        c = self.sse(gw, "/api/v1/events?room_id=m")
        ids = publish(gw.port, [{"type": "t", "room_id": "m"} for _ in range(3)])
        self.assertEqual([e.id for e in c.events(3)], ids)
        request(gw.port, "GET", "/nope")
        harness.wait_until(lambda: harness.get_metrics(gw.port)["roomcast_heartbeats_sent_total"] >= 1,
                           scaled(5), "a heartbeat")
        r = request(gw.port, "GET", "/metrics")
        self.assertEqual(r.status, 200)
        self.assertTrue(r.headers["content-type"].startswith("text/plain"), r)
        self.assertIn("version=0.0.4", r.headers["content-type"])
        text = r.body.decode("utf-8")
        self.assertTrue(text.endswith("\n"))
        sample = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"'
                            r'(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9.eE+-]+|NaN|[+-]Inf)$')
        typed, helped, values = {}, set(), {}
        for line in text.splitlines():
            if line.startswith("# HELP "):
                helped.add(line.split(" ")[2])
            elif line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ")
                self.assertIn(kind, ("counter", "gauge", "histogram", "summary", "untyped"), line)
                self.assertNotIn(name, typed, "one TYPE per metric")
                typed[name] = kind
            else:
                m = sample.match(line)
                self.assertIsNotNone(m, "not a Prometheus sample line: %r" % line)
                self.assertIn(m.group(1), typed, "sample before its TYPE: %r" % line)
                values[m.group(1) + (m.group(2) or "")] = float(m.group(4))
        for name, kind in typed.items():
            self.assertIn(name, helped)
            if kind == "counter":
                self.assertTrue(name.endswith("_total"), name)
        want = {
            "roomcast_connections_open": "gauge",
            "roomcast_streams_open": "gauge",
            "roomcast_events_delivered_total": "counter",
            "roomcast_bytes_delivered_total": "counter",
            "roomcast_heartbeats_sent_total": "counter",
            "roomcast_slow_client_closes_total": "counter",
            "roomcast_bus_frames_received_total": "counter",
            "roomcast_bus_dropped_total": "counter",
            "roomcast_publish_requests_total": "counter",
            "roomcast_http_responses_total": "counter",
        }
        for name, kind in want.items():
            self.assertEqual(typed.get(name), kind, name)
        self.assertGreaterEqual(values["roomcast_connections_open"], 2)  # the stream and this request
        self.assertEqual(values["roomcast_streams_open"], 1)
        self.assertGreaterEqual(values["roomcast_events_delivered_total"], 3)
        self.assertGreater(values["roomcast_bytes_delivered_total"], 3 * 40)
        self.assertGreaterEqual(values["roomcast_heartbeats_sent_total"], 1)
        self.assertEqual(values["roomcast_slow_client_closes_total"], 0)
        self.assertGreaterEqual(values["roomcast_bus_frames_received_total"], 1)
        self.assertEqual(values["roomcast_bus_dropped_total"], 0)
        self.assertEqual(values['roomcast_publish_requests_total{status="2xx"}'], 1)
        self.assertGreaterEqual(values['roomcast_http_responses_total{status="201"}'], 1)
        self.assertGreaterEqual(values['roomcast_http_responses_total{status="404"}'], 1)
        self.assertGreaterEqual(values['roomcast_http_responses_total{status="200"}'], 2)

    def test_cors(self):
        gw = self.cluster.start_gateway("--cors-origin", "*")
        origin = {"Origin": "http://example.test"}
        r = request(gw.port, "OPTIONS", "/api/v1/events",
                    headers=dict(origin, **{"Access-Control-Request-Method": "POST",
                                            "Access-Control-Request-Headers": "content-type, last-event-id"}))
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.body, b"")
        self.assertEqual(r.headers.get("access-control-allow-origin"), "*", r)
        methods = [m.strip() for m in r.headers.get("access-control-allow-methods", "").split(",")]
        self.assertIn("GET", methods, r)
        self.assertIn("POST", methods, r)
        allowed = r.headers.get("access-control-allow-headers", "").lower()
        for h in ("content-type", "last-event-id", "authorization"):
            self.assertIn(h, allowed, r)
        # simple responses, errors, publishes and streams carry the origin header
        for resp in [request(gw.port, "GET", "/healthz", headers=origin),
                     request(gw.port, "GET", "/nope", headers=origin),
                     harness.post_json(gw.port, {"type": "t"}, headers=origin),
                     harness.post_json(gw.port, {"room_id": "a"}, headers=origin)]:
            self.assertEqual(resp.headers.get("access-control-allow-origin"), "*", resp)
        c = self.sse(gw, "/api/v1/events?room_id=a", headers=origin)
        self.assertEqual(c.headers.get("access-control-allow-origin"), "*")
        # without --cors-origin: no CORS header
        gw2 = self.cluster.start_gateway()
        r = request(gw2.port, "GET", "/healthz", headers=origin)
        self.assertNotIn("access-control-allow-origin", r.headers)

    def test_max_conns(self):
        gw = self.cluster.start_gateway("--max-conns", "5")
        # the readiness checks' connections may not be seen closed yet: they would count
        harness.wait_until(lambda: harness.get_metrics(gw.port)["roomcast_connections_open"] <= 1, scaled(5),
                           "the readiness checks' connections closed")
        streams = [self.sse(gw, "/api/v1/events?room_id=a") for _ in range(5)]
        r = RawHTTP(gw.port)
        try:
            r.send(http_request_bytes("GET", "/api/v1/events?room_id=a"))
            resp = r.read_response()
            self.assertJSONError(resp, 503)
            self.assertTrue(r.at_eof(scaled(5)), "closed after the 503")
        finally:
            r.close()
        # once a stream goes, its slot is free again (the gateway may take a moment to see the close)
        streams[0].close()

        def reopened():
            c = SSEClient(gw.port, "/api/v1/events?room_id=a")
            self._clients.append(c)
            if c.read_head() == 200:
                return True
            c.close()
            return False
        harness.wait_until(reopened, scaled(5), "a stream to open after one closed")


class BusDropTest(GatewayTest):
    def test_inbox_drops_are_counted_and_repaired(self):
        # a frame per room, into an inbox of one message: the loop falls behind at once
        self.cluster.start_broker("--bus-whole-bytes", "0")
        gw = self.cluster.start_gateway("--bus-recvbuf", "1")
        fire = self.sse(gw, "/api/v1/events")
        fire.keep_raw(False)
        self.assertEqual(harness.get_metrics(gw.port)["roomcast_bus_dropped_total"], 0)
        ids = []
        for i in range(10):
            ids += publish(gw.port, [{"type": "d", "room_id": "r%d" % j} for j in range(500)])
            if harness.get_metrics(gw.port)["roomcast_bus_dropped_total"] > 0:
                break
        # the holes were repaired: every event, in order
        self.assertEqual([e.id for e in fire.events_until(ids[-1], timeout=scaled(30))], ids)
        m = harness.get_metrics(gw.port)
        self.assertGreater(m["roomcast_bus_dropped_total"], 0)
        self.assertGreater(m["roomcast_gaps_detected_total"], 0)
        self.assertGreater(m["roomcast_events_repaired_total"], 0)
        # the bus messages lost carried answers too: the POSTs above got 201
        # and their ids all the same, asked of the broker (op acks) instead
        # of waiting out --publish-timeout-ms for a 504
        self.assertEqual(len(ids), len(set(ids)))
        self.assertEqual(m["roomcast_publish_requests_total{status=\"5xx\"}"], 0)

    def test_answer_lost_and_forgotten_is_504(self):
        # the same lost bus messages with a broker that remembers no
        # answers (--ack-memory-bytes 0): the POST whose answer was lost is
        # 504 publish_outcome_unknown at --publish-timeout-ms, though published
        self.cluster.start_broker("--bus-whole-bytes", "0", "--ack-memory-bytes", "0")
        gw = self.cluster.start_gateway("--bus-recvbuf", "1", "--publish-timeout-ms", "1000")
        self.sse(gw, "/api/v1/events").keep_raw(False)  # the firehose: every room's frames come
        statuses = []
        for i in range(10):
            r = harness.post_json(gw.port, [{"type": "d", "room_id": "r%d" % j} for j in range(500)])
            statuses.append(r.status)
            if r.status == 504:
                self.assertEqual(r.json()["error"]["code"], "publish_outcome_unknown")
                break
        self.assertIn(504, statuses)
        self.assertEqual(harness.get_metrics(gw.port)["roomcast_publish_acks_asked_total"], 0)


class TimeoutTest(GatewayTest):
    def test_request_and_idle_timeouts(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway("--header-timeout-ms", "300", "--idle-timeout-ms", "300")
        # half a request: 408 after --header-timeout-ms, then closed
        half = RawHTTP(gw.port)
        self.addCleanup(half.close)
        half.send(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        t0 = time.monotonic()
        r = half.read_response()
        self.assertJSONError(r, 408)
        self.assertGreaterEqual(time.monotonic() - t0, 0.25)
        self.assertTrue(half.at_eof(scaled(5)))
        # a keep-alive connection idle past --idle-timeout-ms is closed
        idle = RawHTTP(gw.port)
        self.addCleanup(idle.close)
        idle.send(http_request_bytes("GET", "/healthz"))
        self.assertEqual(idle.read_response().status, 200)
        self.assertTrue(idle.at_eof(scaled(5)))
        # streams are not subject to either
        c = self.sse(gw, "/api/v1/events?room_id=a")
        self.assertIsNone(c.next_item(0.8))
        self.assertFalse(c.eof)
        eid = publish(gw.port, {"type": "t", "room_id": "a"})
        self.assertEqual(c.events(1)[0].id, eid)

    def test_request_behind_a_slow_post_is_answered(self):
        # a request pipelined behind a POST that waits for the broker longer
        # than --header-timeout-ms was received whole: it waits for its turn
        # and is answered, and so is the POST
        broker = self.cluster.start_broker()
        gw = self.cluster.start_gateway("--header-timeout-ms", "300",
                                        "--publish-timeout-ms", str(int(scaled(10) * 1000)))
        c = RawHTTP(gw.port)
        self.addCleanup(c.close)
        broker.proc.signal(signal.SIGSTOP)
        try:
            c.send(http_request_bytes("POST", "/api/v1/events", b'{"type":"slow"}',
                                      {"Content-Type": "application/json"})
                   + http_request_bytes("GET", "/healthz"))
            # past the header timeout while the POST waits
            self.assertFalse(c.at_eof(0.9), "the connection was closed while its POST waited")
        finally:
            broker.proc.signal(signal.SIGCONT)
        c.sock.settimeout(scaled(10))
        r1, r2 = c.read_response(), c.read_response()
        self.assertEqual((r1.status, r2.status), (201, 200), (r1, r2))


class ConnectionTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway()

    def test_keep_alive_two_requests_one_connection(self):
        c = RawHTTP(self.gw.port)
        try:
            local = c.sock.getsockname()
            c.send(http_request_bytes("GET", "/healthz"))
            r1 = c.read_response()
            self.assertEqual(r1.status, 200)
            self.assertNotEqual(r1.headers.get("connection", "").lower(), "close")
            c.send(http_request_bytes("POST", "/api/v1/events", b'{"type":"ka"}',
                                      {"Content-Type": "application/json"}))
            r2 = c.read_response()
            self.assertEqual(r2.status, 201, r2)
            c.send(http_request_bytes("GET", "/readyz"))
            self.assertEqual(c.read_response().status, 200)
            self.assertEqual(c.sock.getsockname(), local)
            # Connection: close is honoured
            c.send(http_request_bytes("GET", "/healthz", keep_alive=False))
            r4 = c.read_response()
            self.assertEqual(r4.status, 200)
            self.assertEqual(r4.headers.get("connection", "").lower(), "close")
            self.assertTrue(c.at_eof(scaled(5)))
        finally:
            c.close()

    def test_http10_closes(self):
        c = RawHTTP(self.gw.port)
        try:
            c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
            self.assertEqual(c.read_response().status, 200)
            self.assertTrue(c.at_eof(scaled(5)))
        finally:
            c.close()

    def test_pipelined_requests_answered_in_order(self):
        s = publish(self.gw.port, {"type": "before"})
        c = RawHTTP(self.gw.port)
        try:
            data = (http_request_bytes("GET", "/healthz")
                    + http_request_bytes("POST", "/api/v1/events", b'{"type":"p1"}',
                                         {"Content-Type": "application/json"})
                    + http_request_bytes("GET", "/nope")
                    + http_request_bytes("POST", "/api/v1/events", b'[{"type":"p2"},{"type":"p3"}]',
                                         {"Content-Type": "application/json"})
                    + http_request_bytes("GET", "/healthz"))
            c.send(data)  # one write
            got = [c.read_response() for _ in range(5)]
            self.assertEqual([r.status for r in got], [200, 201, 404, 201, 200], got)
            self.assertEqual(got[0].json(), {"status": "ok"})
            self.assertEqual(got[4].json(), {"status": "ok"})
            id1 = got[1].json()["id"]
            ids = got[3].json()["ids"]
            base = harness.gseq(s)
            self.assertEqual([harness.gseq(i) for i in [id1] + ids], [base + 1, base + 2, base + 3])
            # and the connection is still usable
            c.send(http_request_bytes("GET", "/healthz"))
            self.assertEqual(c.read_response().status, 200)
        finally:
            c.close()

    def test_pipelined_posts_each_answered_with_its_own_id(self):
        fire = self.sse(self.gw, "/api/v1/events")
        c = RawHTTP(self.gw.port)
        try:
            data = b"".join(http_request_bytes("POST", "/api/v1/events", b'{"type":"q%d"}' % i,
                                               {"Content-Type": "application/json"}) for i in range(20))
            data += http_request_bytes("GET", "/healthz") * 3
            c.send(data)
            got = [c.read_response() for _ in range(23)]
            self.assertEqual([r.status for r in got], [201] * 20 + [200] * 3)
            ids = [r.json()["id"] for r in got[:20]]
        finally:
            c.close()
        # the answer in position i is the id of request i's event, and POSTs are published in the
        # order they came (the gateway keeps one broker request in flight)
        events = fire.events(20)
        by_type = {json.loads(e.data)["type"]: e.id for e in events}
        self.assertEqual([by_type["q%d" % i] for i in range(20)], ids)
        self.assertEqual(ids, sorted(ids, key=harness.gseq), "pipelined POSTs are published in order")
        self.assertEqual([e.id for e in events], ids)

    def test_stream_after_pipelined_request(self):
        c = RawHTTP(self.gw.port)
        try:
            c.send(http_request_bytes("GET", "/healthz") + http_request_bytes("GET", "/api/v1/events?room_id=k"))
            self.assertEqual(c.read_response().status, 200)
            deadline = time.monotonic() + scaled(10)
            while b"retry: 3000\n\n" not in c.buf and time.monotonic() < deadline:
                c._fill()
            self.assertIn(b"\r\n\r\n: connected\nretry: 3000\n\n", c.buf)
            self.assertIn(b"text/event-stream", c.buf)
            eid = publish(self.gw.port, {"type": "t", "room_id": "k"})
            want = ("id: %s\n" % eid).encode()
            while want not in c.buf and time.monotonic() < deadline:
                c._fill()
            self.assertIn(want, c.buf)
        finally:
            c.close()


if __name__ == "__main__":
    harness.main()
