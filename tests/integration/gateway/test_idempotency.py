"""
Idempotent publish: an event may carry a key (Idempotency-Key on a
single-event POST, a `key` field per event in an array, in the broker api and
in `roomcast publish --key`). The same key within --idempotency-window gets
the original id back and publishes nothing; the key is never delivered. A
POST answered 504 (outcome unknown) and retried with its key publishes once;
with --data-dir the keys survive a broker restart, also once the events
holding them have left the history and their segments were deleted.
"""

import json
import os
import signal

import harness
from harness import GatewayTest, post_json, scaled
from test_publish import PAD, sigstop, unread_api_bytes


def keyed(port, event, key):
    return post_json(port, event, headers={"Idempotency-Key": key})


class IdempotencyTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway()

    def seen_until_marker(self, stream, port=None):
        """Publishes a marker; returns the events the stream saw up to it (marker excluded) as (id, data)."""
        marker = harness.publish(port or self.gw.port, {"type": "marker"})
        got = stream.events_until(marker)
        return [(e.id, json.loads(e.data)) for e in got if e.id != marker]

    def test_same_header_key_twice_gives_one_event(self):
        s = self.sse(self.gw, "/api/v1/events")
        ev = {"type": "order.paid", "room_id": "shop", "n": 1}
        r1 = keyed(self.gw.port, ev, "pay-1")
        r2 = keyed(self.gw.port, ev, "pay-1")
        self.assertEqual(r1.status, 201, r1)
        self.assertEqual(r2.status, 201, r2)
        self.assertEqual(r1.json()["id"], r2.json()["id"], "the retry gets the original id")
        other = keyed(self.gw.port, ev, "pay-2")
        self.assertEqual(other.status, 201, other)
        self.assertNotEqual(other.json()["id"], r1.json()["id"], "another key is another event")
        seen = self.seen_until_marker(s)
        self.assertEqual([i for i, _ in seen], [r1.json()["id"], other.json()["id"]])
        self.assertEqual(seen[0][1], ev, "delivered as published, without the key")

    def test_key_fields_in_an_array_are_not_delivered(self):
        s = self.sse(self.gw, "/api/v1/events")
        r1 = post_json(self.gw.port, [{"key": "a-1", "type": "a"}, {"type": "b", "key": "a-2", "x": [1]}, {"type": "c"}])
        self.assertEqual(r1.status, 201, r1)
        ids1 = r1.json()["ids"]
        # a known key and a new one in one batch: the known one gets its id back, the new one is published
        r2 = post_json(self.gw.port, [{"type": "b", "key": "a-2", "x": [1]}, {"type": "d", "key": "a-3"}])
        self.assertEqual(r2.status, 201, r2)
        ids2 = r2.json()["ids"]
        self.assertEqual(ids2[0], ids1[1])
        self.assertNotIn(ids2[1], ids1)
        seen = self.seen_until_marker(s)
        self.assertEqual([i for i, _ in seen], ids1 + [ids2[1]])
        self.assertEqual([d for _, d in seen], [{"type": "a"}, {"type": "b", "x": [1]}, {"type": "c"}, {"type": "d"}])
        # and the history (a resumed stream replays it) has no key either
        r = self.sse(self.gw, "/api/v1/events", headers={"Last-Event-ID": "%s-0" % harness.parse_id(ids1[0])[0]})
        for e in r.events_until(ids2[1]):
            self.assertNotIn("key", json.loads(e.data), e.data)

    def test_the_same_key_twice_in_one_post_is_one_event(self):
        s = self.sse(self.gw, "/api/v1/events")
        r = post_json(self.gw.port, [{"type": "a", "key": "dup"}, {"type": "a", "key": "dup"}])
        self.assertEqual(r.status, 201, r)
        ids = r.json()["ids"]
        self.assertEqual(ids[0], ids[1])
        self.assertEqual([i for i, _ in self.seen_until_marker(s)], ids[:1])

    def test_bad_keys_are_400_and_publish_nothing(self):
        s = self.sse(self.gw, "/api/v1/events")
        port = self.gw.port
        cases = [
            (keyed(port, {"type": "t"}, "k" * 129), "Idempotency-Key"),
            (keyed(port, {"type": "t"}, "has space"), "Idempotency-Key"),
            (keyed(port, [{"type": "t"}], "k1"), "Idempotency-Key"),
            (keyed(port, {"type": "t", "key": "k2"}, "k2"), "key"),
            (post_json(port, {"type": "t", "key": 7}), "key"),
            (post_json(port, {"type": "t", "key": ""}), "key"),
            (post_json(port, [{"type": "t"}, {"type": "t", "key": "k" * 129}]), "events[1].key"),
            (post_json(port, None, raw=b'{"type":"t","key":"a","key":"b"}'), "key"),
        ]
        for r, field in cases:
            with self.subTest(body=r.body):
                self.assertJSONError(r, 400, message_has=field)
        self.assertEqual(self.seen_until_marker(s), [])
        # the longest key and every printable character
        k = "".join(chr(c) for c in range(0x21, 0x7F))[:128]
        r1 = keyed(port, {"type": "t"}, k)
        self.assertEqual(r1.status, 201, r1)
        r2 = post_json(port, {"type": "t", "key": k})
        self.assertEqual(r2.json()["id"], r1.json()["id"], "a header key and a field key are the same key")

    def test_cli_publish_key(self):
        s = self.sse(self.gw, "/api/v1/events")
        c = self.cluster
        a = c.cli("publish", "--type", "t", "--room", "r", "--key", "cli-1")
        b = c.cli("publish", "--type", "t", "--room", "r", "--key", "cli-1")
        self.assertEqual(a.returncode, 0, a.stderr)
        self.assertEqual(b.returncode, 0, b.stderr)
        self.assertEqual(a.stdout, b.stdout)
        self.assertEqual(self.seen_until_marker(s), [(a.stdout.strip(), {"type": "t", "room_id": "r"})])
        bad = c.cli("publish", "--type", "t", "--key", "with space")
        self.assertEqual(bad.returncode, 2, bad.stderr)
        self.assertIn("--key", bad.stderr)
        # ndjson lines carry their own key fields
        nd = c.cli("publish", "--ndjson", stdin='{"type":"t","key":"cli-1","room_id":"r"}\n{"type":"u","key":"cli-2"}\n')
        self.assertEqual(nd.returncode, 0, nd.stderr)
        self.assertEqual(nd.stdout.split()[0], a.stdout.strip())

    def test_browsers_may_send_the_header(self):
        r = harness.request(self.gw.port, "OPTIONS", "/api/v1/events",
                            headers={"Origin": "http://example.test", "Access-Control-Request-Method": "POST",
                                     "Access-Control-Request-Headers": "content-type, idempotency-key"})
        self.assertEqual(r.status, 204, r)
        self.assertIn("idempotency-key", r.headers.get("access-control-allow-headers", "").lower(), r)

    def test_a_key_is_forgotten_after_the_window(self):
        self.cluster.stop_all()
        self.cluster.start_broker("--idempotency-window", "1s")
        gw = self.cluster.start_gateway()
        first = keyed(gw.port, {"type": "t"}, "w-1").json()["id"]
        probe = keyed(gw.port, {"type": "p"}, "probe").json()["id"]
        # the probe's key goes with the window: then so has w-1's, which is older
        harness.wait_until(lambda: keyed(gw.port, {"type": "p"}, "probe").json()["id"] != probe, scaled(10),
                           "the probe's key to leave the window")
        again = keyed(gw.port, {"type": "t"}, "w-1").json()["id"]
        self.assertNotEqual(again, first)

    def test_max_keys_forgets_the_oldest(self):
        self.cluster.stop_all()
        self.cluster.start_broker("--idempotency-max-keys", "2")
        gw = self.cluster.start_gateway()
        ids = [keyed(gw.port, {"type": "t"}, "m-%d" % i).json()["id"] for i in range(3)]
        self.assertEqual(keyed(gw.port, {"type": "t"}, "m-2").json()["id"], ids[2])
        self.assertEqual(keyed(gw.port, {"type": "t"}, "m-1").json()["id"], ids[1])
        self.assertNotEqual(keyed(gw.port, {"type": "t"}, "m-0").json()["id"], ids[0], "m-0 was evicted")
        st = json.loads(self.cluster.cli("stats").stdout)
        self.assertEqual(st["idempotency"]["keys"], 2)
        self.assertGreaterEqual(st["idempotency"]["evicted"], 2)


class IdempotencyRetryTest(GatewayTest):
    def tearDown(self):
        b = self.cluster.broker
        if b is not None and b.proc.alive():
            b.proc.signal(signal.SIGCONT)
        super().tearDown()

    def test_a_post_retried_after_504_with_its_key_publishes_once(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway("--publish-timeout-ms", "300")
        s = self.sse(gw, "/api/v1/events?room_id=a")
        broker = self.cluster.broker
        ev = {"type": "late", "room_id": "a", "pad": "p" * PAD}
        sigstop(broker.proc)
        try:
            r = keyed(gw.port, ev, "retry-1")
            self.assertGreaterEqual(unread_api_bytes(broker), PAD, "the request reached the broker")
        finally:
            broker.proc.signal(signal.SIGCONT)
        self.assertJSONError(r, 504, code="publish_outcome_unknown")
        # the publisher retries with the same key: the broker published the first one meanwhile
        r2 = keyed(gw.port, ev, "retry-1")
        self.assertEqual(r2.status, 201, r2)
        marker = harness.publish(gw.port, {"type": "marker", "room_id": "a"})
        got = s.events_until(marker)
        self.assertEqual([e.id for e in got], [r2.json()["id"], marker], "published once")


class IdempotencyRestartTest(GatewayTest):
    def restart(self, data, *extra):
        old = self.cluster.broker
        old.proc.kill()
        old.proc.wait(scaled(10))
        self.cluster.start_broker("--data-dir", data, *extra, bus=old.bus, api=old.api)

    def post_until_201(self, port, ev, key):
        """The gateway reconnects to the restarted broker: 503 until it has."""
        out = []

        def ok():
            r = keyed(port, ev, key)
            out.append(r)
            return r.status == 201

        harness.wait_until(ok, scaled(20), "a POST through the restarted broker", interval=0.1)
        return out[-1].json()["id"]

    def test_keys_survive_a_broker_restart(self):
        data = os.path.join(self.cluster.dir, "data")
        self.cluster.start_broker("--data-dir", data)
        gw = self.cluster.start_gateway()
        s = self.sse(gw, "/api/v1/events")
        ev = {"type": "t", "room_id": "r"}
        first = keyed(gw.port, ev, "restart-1").json()["id"]
        self.restart(data)
        self.assertEqual(self.post_until_201(gw.port, ev, "restart-1"), first)
        marker = harness.publish(gw.port, {"type": "marker"})
        self.assertEqual([e.id for e in s.events_until(marker)], [first, marker])

    def test_keys_survive_a_restart_after_their_segments_were_deleted(self):
        # a tiny history and tiny segments: the keyed event leaves the history and its segment
        # is deleted; the key stays (in the rooms checkpoint) for the window
        data = os.path.join(self.cluster.dir, "data")
        opts = ("--history-events", "4", "--segment-bytes", "4096")
        self.cluster.start_broker("--data-dir", data, *opts)
        gw = self.cluster.start_gateway()
        ev = {"type": "t", "room_id": "r"}
        first = keyed(gw.port, ev, "old-1").json()["id"]
        seg0 = os.path.join(data, "%020d.seg" % harness.gseq(first))
        for i in range(40):
            harness.publish(gw.port, [{"type": "fill", "pad": "f" * 200}] * 4)
        self.assertFalse(os.path.exists(seg0), "the keyed event's segment was deleted")
        self.assertEqual(keyed(gw.port, ev, "old-1").json()["id"], first)
        self.restart(data, *opts)
        self.assertEqual(self.post_until_201(gw.port, ev, "old-1"), first)


if __name__ == "__main__":
    harness.main()
