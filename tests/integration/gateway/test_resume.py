"""
Resume: Last-Event-ID (header) or last_event_id (query) replays exactly the
events after that id for the stream's rooms, then goes live with no gap and no
duplicate, on any gateway; otherwise the first message is a stream.reset.
"""

import json

import harness
from harness import GatewayTest, gseq, parse_id, publish, scaled


class ResumeTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker("--history-events", "50")
        self.gw = self.cluster.start_gateway()
        # a firehose that has seen every event: the gateway knows the current epoch and last id
        self.watch = self.sse(self.gw, "/api/v1/events")

    def publish_history(self, n=12):
        """Publishes n events across rooms a, b, c and global ones; returns [(id, event)]."""
        out = []
        for i in range(n):
            room = [None, "a", "b", "c"][i % 4] if i % 5 else "a"
            ev = {"type": "h", "i": i}
            if room:
                ev["room_id"] = room
            out.append((publish(self.gw.port, ev), ev))
        self.watch.events_until(out[-1][0])
        return out

    def expect_resume(self, c, history, after_index, rooms):
        """c replays history after after_index (rooms + global) then gets two live events."""
        want = [(i, ev) for i, ev in history[after_index + 1:] if rooms is None or ev.get("room_id") in rooms | {None}]
        got = c.events(len(want))
        self.assertEqual([(e.id, json.loads(e.data)) for e in got], want)
        live = [{"type": "live", "room_id": "a", "k": 1}, {"type": "live", "room_id": "z"}, {"type": "live"}]
        live_ids = publish(self.gw.port, live)
        marker = publish(self.gw.port, {"type": "marker"})
        rest = c.events_until(marker)
        expect_live = [i for i, ev in zip(live_ids, live) if rooms is None or ev.get("room_id") in rooms | {None}]
        self.assertEqual([e.id for e in rest], expect_live + [marker])
        every = [e.id for e in got + rest]
        self.assertEqual(len(every), len(set(every)), "no duplicates")
        self.assertEqual(every, sorted(every, key=gseq), "id order")
        self.assertFalse(any(json.loads(e.data).get("type") == "stream.reset" for e in got + rest))

    def test_last_event_id_header(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=a,b", headers={"Last-Event-ID": h[3][0]})
        self.expect_resume(c, h, 3, {"a", "b"})

    def test_last_event_id_query(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=c&last_event_id=" + h[1][0])
        self.expect_resume(c, h, 1, {"c"})

    def test_header_wins_over_query(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=a&last_event_id=" + h[0][0],
                     headers={"Last-Event-ID": h[6][0]})
        self.expect_resume(c, h, 6, {"a"})

    def test_firehose_resume(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events", headers={"Last-Event-ID": h[4][0]})
        self.expect_resume(c, h, 4, None)

    def test_resume_from_the_last_id_replays_nothing(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": h[-1][0]})
        self.expect_resume(c, h, len(h) - 1, {"a"})

    def test_resume_on_another_gateway(self):
        h = self.publish_history()
        gw2 = self.cluster.start_gateway()
        c = self.sse(gw2, "/api/v1/events?room_id=b", headers={"Last-Event-ID": h[2][0]})
        self.expect_resume(c, h, 2, {"b"})

    def test_reconnect_after_a_cut_loses_nothing(self):
        # a client reads some events, is cut off, publishing goes on, it comes back with its last id
        c = self.sse(self.gw, "/api/v1/events?room_id=a")
        first = publish(self.gw.port, [{"type": "p", "room_id": "a", "i": i} for i in range(5)])
        got = c.events(3)
        c.close()
        more = publish(self.gw.port, [{"type": "p", "room_id": "a", "i": i} for i in range(5, 9)])
        c2 = self.sse(self.gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": got[-1].id})
        rest = c2.events(6)
        self.assertEqual([e.id for e in got + rest], first + more)

    def test_resume_while_publishing_no_gap_no_duplicate(self):
        import threading
        h = self.publish_history(20)
        stop = threading.Event()
        live = []

        def publisher():
            for i in range(200):
                if stop.is_set():
                    return
                live.extend(publish(self.gw.port, [{"type": "l", "room_id": "a", "i": i}]))

        t = threading.Thread(target=publisher)
        t.start()
        try:
            c = self.sse(self.gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": h[0][0]})
            c.events(5, timeout=scaled(10))
        finally:
            stop.set()
            t.join(scaled(20))
        marker = publish(self.gw.port, {"type": "marker"})
        got = [e.id for e in c.events_until(marker, timeout=scaled(20))]
        hist = [i for i, ev in h[1:] if ev.get("room_id") in ("a", None)]
        # the 5 read above are the start of the same sequence
        self.assertEqual(got[-1], marker)
        every = hist + live + [marker]
        self.assertEqual(len(got) + 5, len(every))
        self.assertEqual(got, every[5:])

    def test_malformed_id_resets_history_unavailable(self):
        h = self.publish_history(3)
        for bad in ["garbage", "123", "zz-1", "-5", "abc-", "abc-x1"]:
            with self.subTest(bad=bad):
                c = self.sse(self.gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": bad})
                [first] = c.events(1)
                self.assertEqual(json.loads(first.data), {"type": "stream.reset", "reason": "history_unavailable"})
                self.assertEqual(first.id, h[-1][0], "the reset carries the current last id")
                eid = publish(self.gw.port, {"type": "after", "room_id": "a"})
                self.assertEqual(c.events(1)[0].id, eid, "then live")
                h.append((eid, None))
                c.close()
        # the same through the query parameter
        c = self.sse(self.gw, "/api/v1/events?room_id=a&last_event_id=nope")
        self.assertEqual(json.loads(c.events(1)[0].data)["reason"], "history_unavailable")

    def test_id_ahead_of_the_broker_resets_history_unavailable(self):
        h = self.publish_history(3)
        epoch, n = parse_id(h[-1][0])
        for ahead in [n + 1000, 18446744073709551615, 10 ** 30]:
            with self.subTest(ahead=ahead):
                c = self.sse(self.gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": "%s-%d" % (epoch, ahead)})
                [first] = c.events(1)
                self.assertEqual(json.loads(first.data), {"type": "stream.reset", "reason": "history_unavailable"})
                self.assertEqual(first.id, h[-1][0])
                # then live: nothing is skipped as "already seen"
                eid = publish(self.gw.port, {"type": "after", "room_id": "a"})
                self.assertEqual(c.events(1)[0].id, eid)
                h.append((eid, None))
                c.close()

    def test_resume_from_zero_replays_the_whole_history(self):
        h = self.publish_history(10)
        epoch = parse_id(h[0][0])[0]
        c = self.sse(self.gw, "/api/v1/events?room_id=b", headers={"Last-Event-ID": "%s-0" % epoch})
        self.expect_resume(c, h, -1, {"b"})

    def test_foreign_epoch_resets_epoch_changed(self):
        h = self.publish_history(3)
        epoch, n = parse_id(h[-1][0])
        other = "%x" % ((int(epoch, 16) ^ 0x5a5a5a5a) or 1)
        c = self.sse(self.gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": "%s-%d" % (other, n - 1)})
        [first] = c.events(1)
        self.assertEqual(json.loads(first.data), {"type": "stream.reset", "reason": "epoch_changed"})
        self.assertEqual(first.id, h[-1][0])
        eid = publish(self.gw.port, {"type": "after", "room_id": "a"})
        self.assertEqual(c.events(1)[0].id, eid)

    def test_id_older_than_history_resets_history_unavailable(self):
        h = self.publish_history(80)  # the broker keeps 50
        c = self.sse(self.gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": h[2][0]})
        [first] = c.events(1)
        self.assertEqual(json.loads(first.data), {"type": "stream.reset", "reason": "history_unavailable"})
        self.assertEqual(first.id, h[-1][0])
        after = {"type": "after", "room_id": "a"}
        eid = publish(self.gw.port, after)
        self.assertEqual(c.events(1)[0].id, eid)
        h.append((eid, after))
        m = harness.get_metrics(self.gw.port)
        self.assertGreaterEqual(m['roomcast_stream_resets_total{reason="history_unavailable"}'], 1)
        # within the history it still resumes
        c2 = self.sse(self.gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": h[60][0]})
        self.expect_resume(c2, h, 60, {"a"})


if __name__ == "__main__":
    harness.main()
