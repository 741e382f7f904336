"""
Publishing over HTTP: POST /api/v1/events answers and errors (400, 401, 413,
415, 503), all-or-none arrays; --publish-linger-ms: while publishes flow, a
POST that finds the publisher idle waits for others and they reach the broker
in one request (counted by the broker's stats), with 0 it never waits. A POST
whose broker request went out and got no answer is 504
publish_outcome_unknown, one whose request never left is 503; a gateway
stopped while POSTs wait on the broker exits cleanly.
"""

import json
import os
import signal
import socket
import time

import harness
from harness import GatewayTest, RawHTTP, http_request_bytes, parse_id, post_json, publish, request, scaled


class PublishErrorTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway("--max-body-bytes", "4096", "--max-event-bytes", "1024")

    def post(self, obj=None, raw=None, **kw):
        return post_json(self.gw.port, obj, raw=raw, **kw)

    def assert_nothing_published(self, stream):
        """Only the marker published now reaches the stream."""
        marker = publish(self.gw.port, {"type": "marker"})
        self.assertEqual([e.id for e in stream.events_until(marker)], [marker])

    def test_invalid_json_is_400(self):
        c = self.sse(self.gw, "/api/v1/events")
        for raw in [b'{"type":', b'{"type":"t"} trailing', b"", b"not json", b'{"type":"t",}', b"[1,2",
                    b'{"type":"t"}{"type":"u"}', b'{"type":"t","x":NaN}', b"\xff\xfe"]:
            with self.subTest(raw=raw):
                self.assertJSONError(self.post(raw=raw), 400)
        self.assert_nothing_published(c)

    def test_not_an_event_is_400(self):
        for raw in [b"42", b'"type"', b"null", b"[]", b"[1]", b'[{"type":"t"},"x"]']:
            with self.subTest(raw=raw):
                self.assertJSONError(self.post(raw=raw), 400)

    def test_missing_or_bad_type_is_400_naming_type(self):
        cases = [{"room_id": "a"}, {"type": ""}, {"type": "has space"}, {"type": 7}, {"type": None},
                 {"type": "x" * 65}, {"type": "caf\u00e9"}, {"Type": "t"}]
        for ev in cases:
            with self.subTest(ev=ev):
                self.assertJSONError(self.post(ev), 400, message_has="type")
        self.assertEqual(self.post({"type": "x" * 64}).status, 201)
        self.assertEqual(self.post({"type": "Az09._-"}).status, 201)

    def test_bad_room_id_is_400_naming_room_id(self):
        for ev in [{"type": "t", "room_id": "bad room"}, {"type": "t", "room_id": ""},
                   {"type": "t", "room_id": 5}, {"type": "t", "room_id": "r" * 129},
                   {"type": "t", "room_id": None}, {"type": "t", "room_id": "a,b"}]:
            with self.subTest(ev=ev):
                self.assertJSONError(self.post(ev), 400, message_has="room_id")

    def test_array_is_all_or_none(self):
        c = self.sse(self.gw, "/api/v1/events")
        r = self.post([{"type": "ok", "room_id": "a"}, {"type": "ok"}, {"type": "t", "room_id": "bad room"}])
        err = self.assertJSONError(r, 400, message_has="room_id")
        self.assertIn("[2]", err["message"], "the message names the failing element")
        r = self.post([{"type": "ok"}, {"room_id": "a"}])
        err = self.assertJSONError(r, 400, message_has="type")
        self.assertIn("[1]", err["message"])
        self.assert_nothing_published(c)

    def test_array_limit_1000(self):
        c = self.sse(self.gw, "/api/v1/events")
        gw = self.cluster.start_gateway()  # default --max-body-bytes: room for 1001 small events
        self.assertJSONError(post_json(gw.port, [{"type": "t"}] * 1001), 400)
        self.assert_nothing_published(c)
        r = post_json(gw.port, [{"type": "t"}] * 1000)
        self.assertEqual(r.status, 201, r)
        self.assertEqual(len(r.json()["ids"]), 1000)

    def test_body_over_max_body_bytes_is_413(self):
        c = self.sse(self.gw, "/api/v1/events")
        big = {"type": "t", "pad": "x" * 5000}
        self.assertJSONError(self.post(big), 413)
        # the limit holds without a Content-Length too (chunked); the gateway may answer and close
        # before the whole body is sent, so the client stops sending and reads the answer
        body = json.dumps(big).encode()
        raw = harness.RawHTTP(self.gw.port)
        try:
            raw.send(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n")
            try:
                for i in range(0, len(body), 1000):
                    part = body[i:i + 1000]
                    raw.send(b"%x\r\n%s\r\n" % (len(part), part))
                raw.send(b"0\r\n\r\n")
            except (BrokenPipeError, ConnectionResetError):
                pass
            resp = raw.read_response()
        finally:
            raw.close()
        self.assertJSONError(resp, 413)
        self.assert_nothing_published(c)

    def test_large_body_is_413_and_the_answer_is_readable(self):
        # a client that sends a whole 2 MB body still reads the 413 (no reset eats the answer)
        body = b'{"type":"t","pad":"' + b"x" * (2 * 1024 * 1024) + b'"}'
        raw = harness.RawHTTP(self.gw.port)
        try:
            raw.send(b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n" % len(body))
            try:
                raw.send(body)
            except (BrokenPipeError, ConnectionResetError):
                pass
            resp = raw.read_response()
        finally:
            raw.close()
        self.assertJSONError(resp, 413)
        self.assertEqual(resp.headers.get("connection", "").lower(), "close")

    def test_event_over_max_event_bytes_is_413(self):
        # fits --max-body-bytes (4096), not --max-event-bytes (1024)
        self.assertJSONError(self.post({"type": "t", "pad": "x" * 2000}), 413)
        self.assertEqual(self.post({"type": "t", "pad": "x" * 900}).status, 201)

    def test_non_json_content_type_is_415(self):
        for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                   "application/jsonx"]:
            with self.subTest(ct=ct):
                self.assertJSONError(self.post({"type": "t"}, content_type=ct), 415)
        for ct in ["application/json; charset=utf-8", "Application/JSON"]:
            with self.subTest(ct=ct):
                self.assertEqual(self.post({"type": "t"}, content_type=ct).status, 201)

    def test_publish_token(self):
        gw = self.cluster.start_gateway("--publish-token", "s3cret")
        c = self.sse(gw, "/api/v1/events")
        for headers in [{}, {"Authorization": "Bearer nope"}, {"Authorization": "Bearer s3cre"},
                        {"Authorization": "Bearer s3cretX"}, {"Authorization": "s3cret"},
                        {"Authorization": "Basic czNjcmV0"}]:
            with self.subTest(headers=headers):
                r = post_json(gw.port, {"type": "t"}, headers=headers)
                self.assertJSONError(r, 401)
                self.assertTrue(r.headers.get("www-authenticate", "").startswith("Bearer"), r)
        r = post_json(gw.port, {"type": "t"}, headers={"Authorization": "Bearer s3cret"})
        self.assertEqual(r.status, 201, r)
        self.assertEqual(c.events(1)[0].id, r.json()["id"])
        # subscribing needs no token
        self.sse(gw, "/api/v1/events?room_id=a")
        m = harness.get_metrics(gw.port)
        self.assertEqual(m['roomcast_publish_requests_total{status="4xx"}'], 6)
        self.assertEqual(m['roomcast_publish_requests_total{status="2xx"}'], 1)
        self.assertEqual(m['roomcast_http_responses_total{status="401"}'], 6)


class NoBrokerTest(GatewayTest):
    def test_publish_is_503_when_the_broker_is_not_running(self):
        bus = "tcp://127.0.0.1:%d" % harness.free_port()
        api = "tcp://127.0.0.1:%d" % harness.free_port()
        gw = self.cluster.start_gateway(bus=bus, api=api, ready=False)
        r = request(gw.port, "GET", "/readyz")
        self.assertEqual(r.status, 503, r)
        self.assertFalse(r.json()["ready"])
        r = post_json(gw.port, {"type": "t", "room_id": "a"})
        self.assertJSONError(r, 503, code="broker_unavailable", message_has="nothing was published")
        r = post_json(gw.port, [{"type": "t"}, {"type": "u"}])
        self.assertJSONError(r, 503, code="broker_unavailable")
        # validation still comes first
        self.assertJSONError(post_json(gw.port, {"room_id": "a"}), 400)
        # a stream can open and waits for the broker
        c = self.sse(gw, "/api/v1/events?room_id=a")
        # once the broker starts on those addresses the gateway connects by itself
        self.cluster.start_broker(bus=bus, api=api)
        harness.wait_http(gw, "/readyz")
        eid = publish(gw.port, {"type": "t", "room_id": "a"})
        self.assertEqual(c.events(1)[0].id, eid)

    def test_publish_is_503_after_the_broker_stops(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway()
        publish(gw.port, {"type": "t"})
        self.assertEqual(self.cluster.broker.proc.stop(), 0)
        harness.wait_until(lambda: request(gw.port, "GET", "/readyz").status == 503, scaled(10),
                           "/readyz to turn 503")
        self.assertJSONError(post_json(gw.port, {"type": "t"}), 503, code="broker_unavailable")


PAD = 2000  # bytes of padding in a POST whose broker request the tests look for


def unread_api_bytes(broker):
    """
    Bytes waiting in the broker's accepted api connections that it has not
    read (rx_queue in /proc/net/tcp). With the broker SIGSTOPped, a request a
    gateway sent lands there (loopback) and stays: proof that it left the
    gateway, whose nng send completed before the bytes were written.
    """
    port = int(broker.api.rsplit(":", 1)[1])
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            local, state, queues = fields[1], fields[3], fields[4]
            if state == "01" and int(local.rsplit(":", 1)[1], 16) == port:  # ESTABLISHED, the broker's side
                total += int(queues.split(":")[1], 16)
    return total


def is_stopped(proc):
    """True when every thread of proc is stopped (SIGSTOP)."""
    for tid in os.listdir("/proc/%d/task" % proc.pid):
        with open("/proc/%d/task/%s/stat" % (proc.pid, tid)) as f:
            if f.read().rpartition(")")[2].split()[0] != "T":
                return False
    return True


def sigstop(proc):
    """SIGSTOPs proc and waits until it is stopped (kill(2) returns before every thread is)."""
    proc.signal(signal.SIGSTOP)
    harness.wait_until(lambda: is_stopped(proc), scaled(10), "%s to stop" % proc.name)


def post_bytes(event):
    body = json.dumps(event).encode()
    return http_request_bytes("POST", "/api/v1/events", body, {"Content-Type": "application/json"})


class PublishOutcomeTest(GatewayTest):
    """
    A POST the broker did not answer: 503 broker_unavailable when its request
    never left the gateway (nothing published, safe to retry), 504
    publish_outcome_unknown when it did (the broker may have published it).
    The broker is SIGSTOPped so that a request stays unanswered.
    """

    def tearDown(self):
        # a broker left stopped by a failed test would not exit on SIGTERM
        b = self.cluster.broker
        if b is not None and b.proc.alive() and is_stopped(b.proc):
            b.proc.kill()
        super().tearDown()

    def pipelined_posts_one_sent(self, gw):
        """
        Stops the broker and sends two POSTs at once on one connection: the
        first one's request goes to the broker (waited for), the second waits
        in the gateway behind it (one broker request in flight at a time).
        Returns the connection.
        """
        broker = self.cluster.broker
        sigstop(broker.proc)
        raw = RawHTTP(gw.port, timeout=scaled(30))
        self.addCleanup(raw.close)
        raw.send(post_bytes({"type": "first", "pad": "p" * PAD}) + post_bytes({"type": "second"}))
        harness.wait_until(lambda: unread_api_bytes(broker) >= PAD, scaled(10),
                           "the first POST's request to reach the stopped broker")
        return raw

    def test_connection_lost_after_the_send_is_504_and_before_it_503(self):
        self.cluster.start_broker()
        # far longer than the test takes to kill the broker: the lost connection ends the wait, not the timeout
        gw = self.cluster.start_gateway("--publish-timeout-ms", str(int(scaled(3) * 1000)))
        raw = self.pipelined_posts_one_sent(gw)
        self.cluster.broker.proc.kill()
        self.assertJSONError(raw.read_response(), 504, code="publish_outcome_unknown", message_has="connection")
        # the second POST's request was never sent: nothing was published (503 at once, or once
        # --publish-timeout-ms has passed when nng reports the lost connection after the gateway tried)
        self.assertJSONError(raw.read_response(), 503, code="broker_unavailable", message_has="nothing was published")
        m = harness.get_metrics(gw.port)
        self.assertEqual(m['roomcast_http_responses_total{status="504"}'], 1)
        self.assertEqual(m['roomcast_publish_requests_total{status="5xx"}'], 2)

    def test_timeout_after_the_send_is_504_and_the_event_may_be_published(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway("--publish-timeout-ms", "300")
        s = self.sse(gw, "/api/v1/events?room_id=a")
        broker = self.cluster.broker
        sigstop(broker.proc)
        try:
            r = post_json(gw.port, {"type": "late", "room_id": "a", "pad": "p" * PAD})
            self.assertGreaterEqual(unread_api_bytes(broker), PAD, "the request reached the broker")
        finally:
            broker.proc.signal(signal.SIGCONT)
        self.assertJSONError(r, 504, code="publish_outcome_unknown", message_has="in time")
        # the broker reads the request once it runs again: published after all
        self.assertEqual(json.loads(s.events(1)[0].data)["type"], "late")

    def test_sigterm_while_posts_wait_for_the_broker(self):
        # one POST's request in flight, one queued behind it, when the gateway stops: the publisher
        # goes first, and the api answers the request in flight after it (a NULL dereference once)
        self.cluster.start_broker()
        gw = self.cluster.start_gateway("--publish-timeout-ms", str(int(scaled(30) * 1000)))
        raw = self.pipelined_posts_one_sent(gw)
        gw.proc.signal(signal.SIGTERM)
        self.assertExitsOnSignal(gw.proc, scaled(5))
        # the connection closed with the waiting POSTs unanswered (HTTP: outcome unknown)
        with self.assertRaises((EOFError, ConnectionResetError)):
            raw.read_response()
        self.cluster.broker.proc.kill()


class PublishLingerTest(GatewayTest):
    def broker_publishes(self):
        r = self.cluster.cli("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        st = json.loads(r.stdout)
        return st["publishes"], st["events_published"]

    def two_posts_at_once(self, gw):
        """POST b then c on two connections right away; returns their ids."""
        conns = [RawHTTP(gw.port) for _ in range(2)]
        for i, c in enumerate(conns):
            self.addCleanup(c.close)
            body = json.dumps({"type": "t", "room_id": "r", "i": i}).encode()
            c.send(http_request_bytes("POST", "/api/v1/events", body, {"Content-Type": "application/json"}))
        out = []
        for c in conns:
            r = c.read_response()
            self.assertEqual(r.status, 201, r.body)
            out.append(r.json()["id"])
        return out

    def run_case(self, linger_ms):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway("--publish-linger-ms", str(linger_ms))
        s = self.sse(gw, "/api/v1/events?room_id=r")
        # the first POST after start goes at once (no request went out before
        # it); the next two come right after it, while publishes flow
        first = publish(gw.port, {"type": "t", "room_id": "r", "first": True})
        ids = self.two_posts_at_once(gw)
        got = [e.id for e in s.events(3)]
        self.assertEqual(got, sorted([first] + ids, key=lambda i: parse_id(i)[1]))
        return self.broker_publishes()

    def test_posts_arriving_while_publishes_flow_share_a_request(self):
        # 1 s is far longer than the two POSTs take to arrive, also under ASan
        self.assertEqual(self.run_case(1000), (2, 3))

    def test_no_linger_sends_each_post_that_finds_the_publisher_idle(self):
        # the second POST queues behind the first one's request: one request each
        self.assertEqual(self.run_case(0), (3, 3))



class PublishAckTest(GatewayTest):
    """
    A POST is answered from the bus: the broker puts its ids in the index of
    the flush that carries its events (stats bus.acks) and sends no api
    reply. With --publish-ack-on-api, or while the gateway's bus is not
    connected, the api reply answers, as before. The ids are the events'.
    """

    def bus_acks(self):
        r = self.cluster.cli("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)["bus"]["acks"]

    def publish_three(self, gw):
        s = self.sse(gw, "/api/v1/events?room_id=r")
        one = publish(gw.port, {"type": "one", "room_id": "r"})
        r = post_json(gw.port, [{"type": "two", "room_id": "r"}, {"type": "three", "room_id": "r", "key": "k3"}])
        self.assertEqual(r.status, 201, r.body)
        ids = [one] + r.json()["ids"]
        self.assertEqual([e.id for e in s.events(3)], ids)
        # a known key: nothing published, the original id
        r = post_json(gw.port, {"type": "three", "room_id": "r"}, headers={"Idempotency-Key": "k3"})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.json()["id"], ids[2])
        return ids

    def test_posts_are_answered_on_the_bus(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway()
        self.publish_three(gw)
        self.assertEqual(self.bus_acks(), 3)

    def test_publish_ack_on_api(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway("--publish-ack-on-api")
        self.publish_three(gw)
        self.assertEqual(self.bus_acks(), 0)

    def test_without_a_bus_the_api_answers(self):
        self.cluster.start_broker()
        # a bus nothing listens on: the gateway is not ready, but a POST goes to the api
        gw = self.cluster.start_gateway(bus="tcp://%s:%d" % (harness.HOST, harness.free_port()), ready=False)
        harness.wait_until(lambda: post_json(gw.port, {"type": "x"}).status == 201, scaled(10),
                           "a POST answered 201 by the api")
        self.assertEqual(self.bus_acks(), 0)


class HungBrokerTest(GatewayTest):
    """
    A broker that hangs (SIGSTOP): every POST is answered within
    --publish-timeout-ms of its arrival, the one sent 504 (outcome unknown),
    those that never left 503; the bytes queued for the broker are bounded.
    """

    def tearDown(self):
        b = self.cluster.broker
        if b is not None and b.proc.alive() and is_stopped(b.proc):
            b.proc.signal(signal.SIGCONT)
        super().tearDown()

    def test_each_post_waits_at_most_the_timeout_from_its_arrival(self):
        broker = self.cluster.start_broker()
        gw = self.cluster.start_gateway("--publish-timeout-ms", "1000")
        sigstop(broker.proc)
        conns = [RawHTTP(gw.port, timeout=scaled(30)) for _ in range(6)]
        for c in conns:
            self.addCleanup(c.close)
        t0 = time.monotonic()
        for i, c in enumerate(conns):
            c.send(post_bytes({"type": "hung", "i": i}))
        got = [c.read_response() for c in conns]
        took = time.monotonic() - t0
        statuses = sorted(r.status for r in got)
        # one request went to the broker (504); the others never left (503, safe to retry)
        self.assertEqual(statuses, [503] * 5 + [504], got)
        for r in got:
            self.assertJSONError(r, r.status, "publish_outcome_unknown" if r.status == 504 else "broker_unavailable")
        self.assertLess(took, 1.0 + scaled(1.0), "answers within the timeout of each POST's arrival: %.1f s" % took)

    def test_bytes_queued_for_the_broker_are_bounded(self):
        broker = self.cluster.start_broker()
        # a timeout longer than the test: nothing queued is answered by it meanwhile
        gw = self.cluster.start_gateway("--publish-timeout-ms", "60000", "--publish-queue-bytes", "200000")
        sigstop(broker.proc)
        conns = [RawHTTP(gw.port, timeout=scaled(30)) for _ in range(12)]
        for c in conns:
            self.addCleanup(c.close)
        for i, c in enumerate(conns):
            c.send(post_bytes({"type": "big", "i": i, "pad": "x" * 30000}))
        # the ones past the bound are answered at once, while the broker still hangs
        overloaded = []
        for c in conns:
            c.sock.settimeout(0.5 * harness.TIME_SCALE)
            try:
                r = c.read_response()
            except socket.timeout:
                continue
            overloaded.append(r)
        self.assertGreaterEqual(len(overloaded), 4, "POSTs past --publish-queue-bytes answered at once")
        for r in overloaded:
            self.assertJSONError(r, 503, "overloaded")
            self.assertEqual(r.headers.get("retry-after"), "1")


if __name__ == "__main__":
    harness.main()
