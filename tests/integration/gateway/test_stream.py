"""
Subscribing: the response head and preamble, event round trips, room
filtering, the firehose, the alias path, and two gateways on one broker;
each with small flushes sent whole (the default), with every flush room by
room, with both kinds mixed, and with live events held to share a send
(--write-delay-ms).
"""

import json
import time

import harness
from harness import GatewayTest, gseq, parse_id, publish, post_json, scaled

PREAMBLE = b": connected\nretry: 3000\n\n"


def compact(obj):
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


class StreamTest(GatewayTest):
    # the broker's options: by default a small flush travels whole, in one bus message
    broker_args = ()
    gateway_args = ()

    def setUp(self):
        super().setUp()
        self.cluster.start_broker(*self.broker_args)
        self.gw = self.cluster.start_gateway(*self.gateway_args)

    def test_preamble_bytes_and_headers(self):
        c = self.sse(self.gw, "/api/v1/events?room_id=room-1", open=False)
        self.assertEqual(c.read_head(), 200)
        self.assertTrue(c.head_raw.startswith(b"HTTP/1.1 200 OK\r\n"), c.head_raw)
        self.assertEqual(c.headers.get("content-type"), "text/event-stream; charset=utf-8")
        self.assertEqual(c.headers.get("cache-control"), "no-cache")
        self.assertEqual(c.headers.get("x-accel-buffering"), "no")
        # an SSE body has no length: neither Content-Length nor anything that ends it early
        self.assertNotIn("content-length", c.headers)
        body = c.read_body_bytes(len(PREAMBLE))
        self.assertEqual(body[:len(PREAMBLE)], PREAMBLE)
        # nothing else until an event (or a heartbeat, 15 s by default) comes
        items = c.collect(0.3)
        self.assertEqual([getattr(i, "text", i) for i in items], ["connected"])
        self.assertEqual(c.retry, 3000)
        self.assertEqual(bytes(c.body_raw), PREAMBLE)

    def test_posted_event_arrives_with_its_id_and_exact_json(self):
        c = self.sse(self.gw, "/api/v1/events?room_id=room-1")
        # written compactly by hand: the stream must carry these very bytes
        text = ('{"type":"message.created","room_id":"room-1","message":{"id":"m-1","text":"hi there",'
                '"n":1.50,"tags":["a","b"],"nested":{"ok":true,"none":null}},"seq":-7}')
        r = post_json(self.gw.port, None, raw=text.encode())
        self.assertEqual(r.status, 201, r)
        self.assertTrue(r.headers.get("content-type", "").startswith("application/json"), r)
        body = r.json()
        self.assertEqual(set(body), {"id"}, body)
        parse_id(body["id"])
        [ev] = c.events(1)
        self.assertEqual(ev.id, body["id"])
        self.assertEqual(ev.data, text)
        # and on the wire exactly one SSE message
        self.assertEqual(bytes(c.body_raw), PREAMBLE + ("id: %s\ndata: %s\n\n" % (body["id"], text)).encode())

    def test_pretty_json_is_delivered_compact_with_the_same_fields(self):
        c = self.sse(self.gw, "/api/v1/events?room_id=r")
        obj = {"type": "note.added", "room_id": "r", "text": "caf\u00e9 \u2713 \"quoted\" back\\slash",
               "list": [1, 2, {"x": []}], "empty": {}}
        raw = json.dumps(obj, indent=4, ensure_ascii=True).encode()  # spaces, newlines, \\u escapes
        eid = post_json(self.gw.port, None, raw=raw).json()["id"]
        [ev] = c.events(1)
        self.assertEqual(ev.id, eid)
        self.assertNotIn("\n", ev.data)
        self.assertEqual(json.loads(ev.data), obj)
        self.assertEqual(list(json.loads(ev.data).keys()), list(obj.keys()), "field order is kept")
        # one compact line, strings as sent: the \u escapes stay escapes
        self.assertEqual(ev.data, json.dumps(obj, separators=(",", ":"), ensure_ascii=True), "one compact line")

    def test_array_post_returns_ids_in_order(self):
        c = self.sse(self.gw, "/api/v1/events?room_id=r")
        evs = [{"type": "t.%d" % i, "room_id": "r", "i": i} for i in range(5)]
        r = post_json(self.gw.port, evs)
        self.assertEqual(r.status, 201, r)
        body = r.json()
        self.assertEqual(set(body), {"ids"}, body)
        ids = body["ids"]
        self.assertEqual(len(ids), 5)
        epochs = {parse_id(i)[0] for i in ids}
        self.assertEqual(len(epochs), 1, ids)
        self.assertEqual([gseq(i) for i in ids], list(range(gseq(ids[0]), gseq(ids[0]) + 5)))
        got = c.events(5)
        self.assertEqual([e.id for e in got], ids)
        self.assertEqual([json.loads(e.data) for e in got], evs)

    def test_room_filtering(self):
        gw = self.gw
        streams = {
            "a": self.sse(gw, "/api/v1/events?room_id=a"),
            "b": self.sse(gw, "/api/v1/events?room_id=b"),
            "a_repeated_b": self.sse(gw, "/api/v1/events?room_id=a&room_id=b"),
            "a_comma_b": self.sse(gw, "/api/v1/events?room_id=a,b"),
            "a_alias": self.sse(gw, "/api/v1/im/events?room_id=a"),
            "firehose": self.sse(gw, "/api/v1/events"),
            "firehose_alias": self.sse(gw, "/api/v1/im/events"),
            "c_dup": self.sse(gw, "/api/v1/events?room_id=c&room_id=c,c"),
            # unknown parameters are ignored, a decoded NUL does not make one a room_id
            "a_unknown": self.sse(gw, "/api/v1/events?room_id=a&room%5Fid=b&room_id%00x=b&x=1"),
            "nul_is_not_room_id": self.sse(gw, "/api/v1/events?room_id%00x=b"),
        }
        # interleaved ids across rooms; one global event in the middle
        plan = [("a", 1), ("b", 1), ("c", 1), (None, 1), ("b", 2), ("a", 2), ("a", 3), ("c", 2), ("b", 3)]
        ids = {}
        for room, n in plan:
            ev = {"type": "t", "n": n}
            if room is not None:
                ev["room_id"] = room
            ids[(room, n)] = publish(gw.port, ev)
        marker = publish(gw.port, {"type": "marker"})  # global: ends every stream's expectations

        def expected(rooms):
            return [ids[k] for k in plan if rooms is None or k[0] is None or k[0] in rooms] + [marker]

        want = {
            "a": expected({"a"}), "b": expected({"b"}), "a_repeated_b": expected({"a", "b"}),
            "a_comma_b": expected({"a", "b"}), "a_alias": expected({"a"}), "firehose": expected(None),
            "firehose_alias": expected(None), "c_dup": expected({"c"}),
            "a_unknown": expected({"a", "b"}), "nul_is_not_room_id": expected(None),
        }
        for name, c in streams.items():
            got = [e.id for e in c.events_until(marker)]
            self.assertEqual(got, want[name], name)
            self.assertEqual(got, sorted(got, key=gseq), name + ": id order")
        # global events carry no room_id; payloads are the published ones
        self.assertTrue(all(parse_id(i)[0] == parse_id(marker)[0] for i in ids.values()))

    def test_concurrent_publishers_every_stream_in_id_order(self):
        gw = self.gw
        rooms = ["r%d" % i for i in range(4)]
        fire = self.sse(gw, "/api/v1/events")
        per_room = {r: self.sse(gw, "/api/v1/events?room_id=" + r) for r in rooms}
        pair = self.sse(gw, "/api/v1/events?room_id=r0,r1")
        def batch(k, i):
            events = [{"type": "w", "room_id": rooms[(k + i) % len(rooms)], "k": k, "i": i}]
            if i % 5 == 0:
                events.append({"type": "w.global", "k": k, "i": i})
            return events

        published = harness.publish_concurrently(gw.port, 4, 25, batch)
        marker = publish(gw.port, {"type": "marker"})
        all_ids = [p[0] for p in published]
        self.assertEqual(len(set(all_ids)), len(all_ids), "ids are unique")

        got = fire.events_until(marker)
        self.assertEqual([e.id for e in got], all_ids + [marker])
        for e, (eid, ev) in zip(got, published):
            self.assertEqual(json.loads(e.data), ev)
        for room, c in per_room.items():
            want = [i for i, ev in published if ev.get("room_id") in (room, None)] + [marker]
            self.assertEqual([e.id for e in c.events_until(marker)], want, room)
        want = [i for i, ev in published if ev.get("room_id") in ("r0", "r1", None)] + [marker]
        self.assertEqual([e.id for e in pair.events_until(marker)], want, "r0,r1")

    def test_two_gateways_deliver_the_same_events_with_the_same_ids(self):
        gw2 = self.cluster.start_gateway()
        s1 = self.sse(self.gw, "/api/v1/events?room_id=x")
        s2 = self.sse(gw2, "/api/v1/events?room_id=x")
        f2 = self.sse(gw2, "/api/v1/events")
        ids = []
        for i in range(10):
            gw = self.gw if i % 2 == 0 else gw2
            ids.append(publish(gw.port, {"type": "t", "room_id": "x" if i % 3 else "y", "i": i}))
        marker = publish(gw2.port, {"type": "marker"})
        got1 = [(e.id, e.data) for e in s1.events_until(marker)]
        got2 = [(e.id, e.data) for e in s2.events_until(marker)]
        self.assertEqual(got1, got2)
        self.assertEqual([i for i, _ in got1], [ids[i] for i in range(10) if i % 3] + [marker])
        self.assertEqual([e.id for e in f2.events_until(marker)], ids + [marker])

    def test_cli_publish_reaches_streams(self):
        c = self.sse(self.gw, "/api/v1/events?room_id=room-1")
        r = self.cluster.cli("publish", "--room", "room-1", "--type", "message.created", "--data", '{"text":"hi"}')
        self.assertEqual(r.returncode, 0, r.stderr)
        cli_id = r.stdout.strip()
        parse_id(cli_id)
        [ev] = c.events(1)
        self.assertEqual(ev.id, cli_id)
        self.assertEqual(json.loads(ev.data), {"type": "message.created", "room_id": "room-1", "text": "hi"})
        lines = [compact({"type": "n", "room_id": "room-1", "i": i}) for i in range(3)]
        lines.insert(1, compact({"type": "n", "room_id": "other", "i": 9}))
        r = self.cluster.cli("publish", "--ndjson", stdin="\n".join(lines) + "\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        out_ids = r.stdout.split()
        self.assertEqual(len(out_ids), 4, r.stdout)
        got = c.events(3)
        self.assertEqual([e.id for e in got], [out_ids[0], out_ids[2], out_ids[3]])
        self.assertEqual([e.data for e in got], [lines[0], lines[2], lines[3]])

    def test_a_new_stream_starts_live(self):
        # once the gateway has passed an event on, a stream opened later does not get it (no resume asked)
        watch = self.sse(self.gw, "/api/v1/events")
        before = publish(self.gw.port, {"type": "early", "room_id": "r"})
        self.assertEqual(watch.events(1)[0].id, before)
        c = self.sse(self.gw, "/api/v1/events?room_id=r")
        after = publish(self.gw.port, {"type": "late", "room_id": "r"})
        [ev] = c.events(1)
        self.assertEqual(ev.id, after)
        self.assertEqual(gseq(after), gseq(before) + 1)


class StreamRoomFramesTest(StreamTest):
    """The same, with every flush sent room by room: a frame per room, then the index."""
    broker_args = ("--bus-whole-bytes", "0")


class StreamMixedFlushesTest(StreamTest):
    """The same, with a flush of one small event whole and larger ones room by room."""
    broker_args = ("--bus-whole-bytes", "200")


class StreamWriteDelayTest(StreamTest):
    """The same, with a stream's live events held up to 50 ms to share a send."""
    gateway_args = ("--write-delay-ms", "50")

    def test_a_busy_stream_gets_the_events_within_the_delay_in_one_send(self):
        # the longest delay: far longer than three POSTs take, also under ASan
        gw = self.cluster.start_gateway("--write-delay-ms", "1000")
        c = self.sse(gw, "/api/v1/events?room_id=r")
        time.sleep(1.1)  # a quiet spell since the preamble
        a = publish(gw.port, {"type": "a", "room_id": "r"})
        b = publish(gw.port, {"type": "b", "room_id": "r"})
        d = publish(gw.port, {"type": "d", "room_id": "r"})
        ea, eb, ed = c.events(3, timeout=scaled(15))
        self.assertEqual([ea.id, eb.id, ed.id], [a, b, d])
        # a found the stream quiet and went at once; b came less than the
        # delay after it, so it waited, and d went with it: one read for both
        # (unless POSTs took a second here)
        self.assertEqual(eb.t, ed.t)
        self.assertLess(ea.t, eb.t)

if __name__ == "__main__":
    harness.main()
