"""
Bus subscriptions: a gateway receives only the rooms that have streams on it
(subscribed with the first stream, unsubscribed after the last), everything
while a firehose stream is open or beyond --bus-max-rooms, and a stream that
joins a room while that room's events flow still gets, in id order, every
event after its start. Room topics apply to flushes sent room by room, so
these brokers send every flush that way (--bus-whole-bytes 0); with the
default, a small flush reaches every gateway whole, in one message.
"""

import threading
import time

import harness
from harness import GatewayTest, gseq, publish, scaled


def wait_metric(port, name, pred, what, timeout=None):
    """Polls /metrics until pred(value of name) holds; returns the metrics."""
    got = {}

    def ok():
        got.update(harness.get_metrics(port))
        return pred(got.get(name, 0))

    harness.wait_until(ok, timeout or scaled(10), what)
    return got


class SubscribeTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker("--bus-whole-bytes", "0")
        self.gw = self.cluster.start_gateway()

    def events_received(self):
        return harness.get_metrics(self.gw.port)["roomcast_bus_events_received_total"]

    def settle(self, before, expected):
        """
        Publishes a global marker, waits until the gateway received `expected`
        events plus the marker since `before`, then a little longer, and
        returns the count: anything it should not have received shows as more.
        """
        publish(self.gw.port, {"type": "marker"})
        wait_metric(self.gw.port, "roomcast_bus_events_received_total", lambda v: v >= before + expected + 1,
                    "%d events and the global marker on the bus" % expected)
        time.sleep(0.3)
        return self.events_received()

    def test_only_rooms_with_streams_arrive(self):
        port = self.gw.port
        m = harness.get_metrics(port)
        self.assertEqual(m["roomcast_bus_rooms_subscribed"], 0)
        self.assertEqual(m["roomcast_bus_subscribed_all"], 0)

        # no stream here: another room's events never reach this gateway, global ones do
        base = self.events_received()
        publish(port, [{"type": "t", "room_id": "room-b", "i": i} for i in range(50)])
        self.assertEqual(self.settle(base, 0), base + 1, "only the global marker arrived")

        # a stream on room-a subscribes room-a only
        a = self.sse(self.gw, "/api/v1/events?room_id=room-a")
        wait_metric(port, "roomcast_bus_rooms_subscribed", lambda v: v == 1, "room-a subscribed")
        base = self.events_received()
        publish(port, [{"type": "t", "room_id": "room-b", "i": i} for i in range(30)])
        ids = publish(port, [{"type": "t", "room_id": "room-a", "i": i} for i in range(5)])
        self.assertEqual(self.settle(base, 5), base + 5 + 1, "room-a's five and the marker")
        got = a.events(6)  # the five, then the global marker
        self.assertEqual([e.id for e in got[:5]], ids)
        self.assertEqual(got[5].data, '{"type":"marker"}')

        # a second stream on room-a: still one subscription; after the last leaves, none
        a2 = self.sse(self.gw, "/api/v1/events?room_id=room-a")
        self.assertEqual(harness.get_metrics(port)["roomcast_bus_rooms_subscribed"], 1)
        a.close()
        time.sleep(0.1)
        self.assertEqual(harness.get_metrics(port)["roomcast_bus_rooms_subscribed"], 1)
        a2.close()
        wait_metric(port, "roomcast_bus_rooms_subscribed", lambda v: v == 0, "room-a unsubscribed")
        base = self.events_received()
        publish(port, [{"type": "t", "room_id": "room-a", "i": i} for i in range(20)])
        self.assertEqual(self.settle(base, 0), base + 1, "room-a is no longer received")

    def test_small_flushes_reach_every_gateway_whole(self):
        broker = self.cluster.start_broker()  # the default --bus-whole-bytes
        gw = self.cluster.start_gateway(broker=broker)
        a = self.sse(gw, "/api/v1/events?room_id=room-a")
        wait_metric(gw.port, "roomcast_bus_rooms_subscribed", lambda v: v == 1, "room-a subscribed")
        before = harness.get_metrics(gw.port)
        # one POST, one flush of two rooms: one message with all six events
        events = [{"type": "t", "room_id": "room-%s" % "ab"[i % 2], "i": i} for i in range(6)]
        ids = publish(gw.port, events)
        got = a.events(3)
        self.assertEqual([e.id for e in got], ids[0::2])
        m = wait_metric(gw.port, "roomcast_bus_events_received_total",
                        lambda v: v >= before["roomcast_bus_events_received_total"] + 6, "the flush")
        self.assertEqual(m["roomcast_bus_events_received_total"] - before["roomcast_bus_events_received_total"], 6)
        self.assertEqual(m["roomcast_bus_frames_received_total"] - before["roomcast_bus_frames_received_total"], 1)
        self.assertEqual(m["roomcast_gaps_detected_total"], before["roomcast_gaps_detected_total"])

    def test_firehose_takes_everything_while_open(self):
        port = self.gw.port
        f = self.sse(self.gw, "/api/v1/events")
        wait_metric(port, "roomcast_bus_subscribed_all", lambda v: v == 1, "subscribed to everything")
        base = self.events_received()
        ids = publish(port, [{"type": "t", "room_id": "room-%d" % (i % 7), "i": i} for i in range(40)])
        self.assertEqual([e.id for e in f.events(40)], ids)
        self.assertEqual(self.settle(base, 40), base + 40 + 1)
        f.close()
        wait_metric(port, "roomcast_bus_subscribed_all", lambda v: v == 0, "back to rooms")
        base = self.events_received()
        publish(port, [{"type": "t", "room_id": "room-1"}])
        self.assertEqual(self.settle(base, 0), base + 1, "room-1 has no stream here any more")

    def test_over_bus_max_rooms_takes_everything(self):
        gw = self.cluster.start_gateway("--bus-max-rooms", "2")
        streams = [self.sse(gw, "/api/v1/events?room_id=r%d" % i) for i in range(3)]
        m = wait_metric(gw.port, "roomcast_bus_subscribed_all", lambda v: v == 1, "everything over 2 rooms")
        self.assertEqual(m["roomcast_bus_rooms_subscribed"], 0)
        ids = publish(gw.port, [{"type": "t", "room_id": "r%d" % (i % 4), "i": i} for i in range(12)])
        for i, s in enumerate(streams):
            self.assertEqual([e.id for e in s.events(3)], ids[i::4])
        # down to one room (at most half the limit): room by room again, nothing lost on the way
        streams[0].close()
        streams[1].close()
        m = wait_metric(gw.port, "roomcast_bus_subscribed_all", lambda v: v == 0, "back to rooms")
        self.assertEqual(m["roomcast_bus_rooms_subscribed"], 1)
        ids = publish(gw.port, [{"type": "t", "room_id": "r%d" % (i % 4), "i": i} for i in range(8)])
        self.assertEqual([e.id for e in streams[2].events(2)], ids[2::4])

    def test_bus_max_rooms_zero_keeps_room_topics(self):
        gw = self.cluster.start_gateway("--bus-max-rooms", "0")
        streams = [self.sse(gw, "/api/v1/events?room_id=r%d" % i) for i in range(5)]
        m = wait_metric(gw.port, "roomcast_bus_rooms_subscribed", lambda v: v == 5, "five room topics")
        self.assertEqual(m["roomcast_bus_subscribed_all"], 0)
        ids = publish(gw.port, [{"type": "t", "room_id": "r%d" % i} for i in range(5)])
        for i, s in enumerate(streams):
            self.assertEqual([e.id for e in s.events(1)], [ids[i]])

    def test_joining_a_room_while_it_flows_loses_nothing(self):
        """
        Streams that join rooms while events flow (the first stream of room x
        on this gateway, and one on x+y where y is already subscribed) receive
        a gap-free run of their rooms' events, in id order, up to the end,
        compared with a firehose stream on a second gateway.
        """
        ref_gw = self.cluster.start_gateway()
        ref = self.sse(ref_gw, "/api/v1/events")
        y = self.sse(self.gw, "/api/v1/events?room_id=y")
        stop = threading.Event()
        errors = []
        rooms = ["x", "y", "z"]

        def flood():
            i = 0
            try:
                deadline = time.monotonic() + scaled(3)
                while not stop.is_set() and i < 3000 and time.monotonic() < deadline:
                    publish(self.gw.port, [{"type": "f", "room_id": rooms[(i + k) % 3], "i": i + k} for k in range(5)])
                    i += 5
            except Exception as e:  # reported by the main thread
                errors.append(e)

        t = threading.Thread(target=flood)
        t.start()
        try:
            time.sleep(0.2)
            joined = []
            for path in ("/api/v1/events?room_id=x", "/api/v1/events?room_id=x,y"):
                joined.append(self.sse(self.gw, path))
                time.sleep(0.1)
        finally:
            stop.set()
            t.join(scaled(10))
        self.assertFalse(errors, errors)
        last = publish(self.gw.port, [{"type": "end", "room_id": r} for r in rooms])

        reference = ref.events_until(last[-1], timeout=scaled(20))
        by_room = {r: [e.id for e in reference if ('"room_id":"%s"' % r) in e.data] for r in rooms}
        wanted = {
            "x": by_room["x"],
            "x,y": sorted(by_room["x"] + by_room["y"], key=gseq),
            "y": by_room["y"],
        }
        for name, s, end in (("x", joined[0], last[0]), ("x,y", joined[1], last[1]), ("y", y, last[1])):
            got = [e.id for e in s.events_until(end, timeout=scaled(20))]
            self.assertGreater(len(got), 1, name)
            want = wanted[name]
            self.assertIn(got[0], want, name)
            start = want.index(got[0])
            self.assertEqual(got, want[start:], "stream %s: a gap-free run in id order up to the end" % name)
        m = harness.get_metrics(self.gw.port)
        self.assertEqual(m['roomcast_stream_resets_total{reason="gap_unrecoverable"}'], 0)


if __name__ == "__main__":
    harness.main()
