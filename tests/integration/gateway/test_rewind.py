"""
Rewind: rewind=N starts a stream with the last N events of its rooms and the
global events (merged in id order), rewind=<duration> with those of the last
<duration>, then live with no gap and no duplicate; bounded by --max-rewind;
Last-Event-ID wins over it; a history holding fewer gives what there is
(no stream.reset); bad values are 400 naming rewind.
"""

import json
import threading
import time

from harness import GatewayTest, gseq, publish, request, scaled


class RewindTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker("--history-events", "5000")
        self.gw = self.cluster.start_gateway("--max-rewind", "100")
        # a firehose that has seen every event: the gateway knows the current epoch and last id
        self.watch = self.sse(self.gw, "/api/v1/events")
        self.filter = True  # the streams name rooms (None: the firehose, which gets room z too)

    def publish_history(self, n=12, tag="h"):
        """Publishes n events across rooms a, b, c and global ones; returns [(id, event)]."""
        out = []
        for i in range(n):
            room = [None, "a", "b", "c"][i % 4] if i % 5 else "a"
            ev = {"type": tag, "i": i}
            if room:
                ev["room_id"] = room
            out.append((publish(self.gw.port, ev), ev))
        self.watch.events_until(out[-1][0])
        return out

    def expect(self, c, want, rooms=None):
        """c gets exactly want ([(id, event)]) first, then the live events of rooms (no duplicate, id order)."""
        got = c.events(len(want)) if want else []
        self.assertEqual([(e.id, json.loads(e.data)) for e in got], want)
        live = publish(self.gw.port, [{"type": "live", "room_id": "a"}, {"type": "live", "room_id": "z"}])
        marker = publish(self.gw.port, {"type": "marker"})
        rest = c.events_until(marker)
        want_live = [live[0]] if rooms is None or "a" in rooms else []
        if self.filter is None:
            want_live = live
        self.assertEqual([e.id for e in rest], want_live + [marker])
        every = [e.id for e in got + rest]
        self.assertEqual(len(every), len(set(every)), "no duplicates")
        self.assertEqual(every, sorted(every, key=gseq), "id order")

    @staticmethod
    def of(history, rooms):
        return [(i, ev) for i, ev in history if rooms is None or ev.get("room_id") in rooms | {None}]

    def test_rewind_by_count_across_rooms_and_global(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=a,b&rewind=5")
        self.expect(c, self.of(h, {"a", "b"})[-5:])

    def test_rewind_one_room(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=c&rewind=3")
        self.expect(c, self.of(h, {"c"})[-3:], {"c"})

    def test_rewind_firehose(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?rewind=7")
        self.filter = None
        self.expect(c, h[-7:])

    def test_rewind_zero_is_live(self):
        self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=a&rewind=0")
        self.expect(c, [])

    def test_rewind_larger_than_history(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=a,b,c&rewind=100")
        # everything there is, and no stream.reset: it is not a resume
        self.expect(c, h)

    def test_rewind_by_duration(self):
        old = self.publish_history(6, tag="old")
        # the old events are more than 2 s old once this returns
        time.sleep(2.5)
        new = self.publish_history(6, tag="new")
        c = self.sse(self.gw, "/api/v1/events?room_id=a,b,c&rewind=2s")
        got = c.events(len(new))
        self.assertEqual([(e.id, json.loads(e.data)) for e in got], new)
        c2 = self.sse(self.gw, "/api/v1/events?room_id=a,b&rewind=1h")
        self.expect(c2, self.of(old + new, {"a", "b"}))

    def test_rewind_by_duration_bounded_by_max_rewind(self):
        h = self.publish_history(120)
        c = self.sse(self.gw, "/api/v1/events?rewind=1h")
        self.filter = None
        self.expect(c, h[-100:])

    def test_last_event_id_wins(self):
        h = self.publish_history()
        c = self.sse(self.gw, "/api/v1/events?room_id=a,b&rewind=2", headers={"Last-Event-ID": h[3][0]})
        self.expect(c, self.of(h[4:], {"a", "b"}))

    def test_last_event_id_query_wins(self):
        h = self.publish_history()
        c2 = self.sse(self.gw, "/api/v1/events?room_id=a,b&rewind=2&last_event_id=" + h[5][0])
        self.expect(c2, self.of(h[6:], {"a", "b"}))

    def test_rewind_while_publishing_no_gap_no_duplicate(self):
        h = self.publish_history(40)
        stop = threading.Event()
        live = []

        def publisher():
            for i in range(300):
                if stop.is_set():
                    return
                live.extend(publish(self.gw.port, [{"type": "l", "room_id": "a", "i": i}]))

        t = threading.Thread(target=publisher)
        t.start()
        try:
            time.sleep(0.05)
            c = self.sse(self.gw, "/api/v1/events?room_id=a&rewind=10")
            first = c.events(5, timeout=scaled(10))
        finally:
            stop.set()
            t.join(scaled(20))
        marker = publish(self.gw.port, {"type": "marker"})
        got = [e.id for e in first + c.events_until(marker, timeout=scaled(20))]
        every = [i for i, _ in self.of(h, {"a"})] + live + [marker]
        self.assertEqual(len(got), len(set(got)), "no duplicates")
        self.assertGreaterEqual(len(got), 11)
        # a contiguous run of the room's sequence up to the marker: no gap at the seam
        self.assertEqual(got, every[len(every) - len(got):])

    def test_rewind_before_the_gateway_knows_the_bus(self):
        h = self.publish_history()
        gw2 = self.cluster.start_gateway()
        c = self.sse(gw2, "/api/v1/events?room_id=a&rewind=2")
        want = self.of(h, {"a"})[-2:]
        got = c.events(2)
        self.assertEqual([(e.id, json.loads(e.data)) for e in got], want)

    def test_bad_values_are_400_naming_rewind(self):
        for bad in ["", "-1", "abc", "10x", "1.5s", "0s", "101", "99999999999"]:
            with self.subTest(bad=bad):
                r = request(self.gw.port, "GET", "/api/v1/events?room_id=a&rewind=" + bad)
                self.assertEqual(r.status, 400, r.body)
                err = r.json()["error"]
                self.assertEqual(err["code"], "invalid_parameter")
                self.assertIn("rewind", err["message"])
        r = request(self.gw.port, "GET", "/api/v1/events?room_id=a&rewind=101")
        self.assertIn("--max-rewind", r.json()["error"]["message"])


class RewindEvictedTest(GatewayTest):
    def test_rewind_past_the_oldest_retained_gives_what_there_is(self):
        self.cluster.start_broker("--history-events", "20")
        gw = self.cluster.start_gateway()
        watch = self.sse(gw, "/api/v1/events")
        ids = [publish(gw.port, {"type": "e", "room_id": "a", "i": i}) for i in range(30)]
        watch.events_until(ids[-1])
        c = self.sse(gw, "/api/v1/events?room_id=a&rewind=1000")
        marker = publish(gw.port, {"type": "marker", "room_id": "a"})
        got = c.events_until(marker)
        self.assertFalse(any(json.loads(e.data).get("type") == "stream.reset" for e in got))
        got = [e.id for e in got]
        self.assertGreaterEqual(len(got), 15)
        self.assertEqual(got, (ids + [marker])[-len(got):])


if __name__ == "__main__":
    import unittest
    unittest.main()
