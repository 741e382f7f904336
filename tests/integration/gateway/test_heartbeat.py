"""
Heartbeats: ': ping' after --heartbeat-ms without a byte, none while events
flow, none at all with --heartbeat-ms 0.
"""

import threading
import time

import harness
from harness import GatewayTest, SSEComment, SSEEvent, publish, scaled

HB_MS = 300
# how far a ping may arrive from when it is due: 25 ms on an idle machine,
# stretched for the sanitizer build (the loop is slower, the schedule is not)
ON_TIME_MS = 25 * harness.TIME_SCALE
# a ping is never due less than HB_MS after the previous output; the client
# may see two arrivals closer than that by its own scheduling jitter only
JITTER_MS = 15


def publish_in_background(port, room, count, interval, stop=None):
    """Publishes count events to room, one every interval seconds, on a thread; returns (thread, errors)."""
    errors = []

    def publisher():
        try:
            for i in range(count):
                if stop is not None and stop.is_set():
                    break
                publish(port, {"type": "tick", "room_id": room, "i": i})
                time.sleep(interval)
        except Exception as e:
            errors.append(e)

    t = threading.Thread(target=publisher)
    t.start()
    return t, errors


def pings(items):
    return [i for i in items if isinstance(i, SSEComment) and i.text == "ping"]


class HeartbeatTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()

    def test_idle_stream_gets_pings(self):
        gw = self.cluster.start_gateway("--heartbeat-ms", str(HB_MS))
        c = self.sse(gw, "/api/v1/events?room_id=idle")
        items = c.collect(1.6)
        got = pings(items)
        self.assertEqual(len(got), len(items), "only pings on an idle stream: %r" % (items,))
        self.assertGreaterEqual(len(got), 4, "pings in 1.6 s at --heartbeat-ms %d: %r" % (HB_MS, items))
        # no more than one per interval (1.6 s / 0.3 s = 5, plus slack for the first)
        self.assertLessEqual(len(got), 6, items)
        # the wire form is exactly ': ping' and a blank line
        self.assertIn(b": ping\n\n", bytes(c.body_raw))
        self.assertNotIn(b": ping\n: ping", bytes(c.body_raw))
        # a firehose stream is idle too and gets its own pings
        f = self.sse(gw, "/api/v1/events")
        self.assertGreaterEqual(len(pings(f.collect(1.0))), 2)
        m = harness.get_metrics(gw.port)
        self.assertGreaterEqual(m["roomcast_heartbeats_sent_total"], 6)

    def assertPingsOnTime(self, start, items, what):
        """Each ping HB_MS after the previous output (start: the preamble), within ON_TIME_MS."""
        prev = start
        for item in items:
            gap = (item.t - prev) * 1000.0
            if isinstance(item, SSEComment) and item.text == "ping":
                self.assertGreaterEqual(gap, HB_MS - JITTER_MS,
                                        "%s: a ping %.0f ms after the previous output: %s" % (what, gap, self._rel(start, items)))
                self.assertLessEqual(gap, HB_MS + ON_TIME_MS,
                                     "%s: a ping %.0f ms after the previous output: %s" % (what, gap, self._rel(start, items)))
            prev = item.t

    @staticmethod
    def _rel(start, items):
        return ", ".join("%s@%.0f" % ("ping" if isinstance(i, SSEComment) else "event", (i.t - start) * 1000.0)
                         for i in items)

    def test_pings_on_time(self):
        # several streams opened and closed one after the other: the first
        # ping HB_MS after the preamble, each next one HB_MS after the last
        gw = self.cluster.start_gateway("--heartbeat-ms", str(HB_MS))
        for k in range(4):
            c = self.sse(gw, "/api/v1/events?room_id=r%d" % k)
            items = c.collect(1.35)
            got = pings(items)
            self.assertEqual(len(got), len(items), items)
            self.assertGreaterEqual(len(got), 4, "stream %d: %s" % (k, self._rel(c.retry_t, items)))
            self.assertPingsOnTime(c.retry_t, items, "stream %d" % k)
            c.close()
            # the gateway notices the client left without having to write to it
            harness.wait_until(lambda: harness.get_metrics(gw.port)["roomcast_streams_open"] == 0,
                               scaled(2), "the closed stream leaves the gateway")

    def test_ping_after_last_event(self):
        # after events stop, the next ping comes HB_MS after the last one
        gw = self.cluster.start_gateway("--heartbeat-ms", str(HB_MS))
        c = self.sse(gw, "/api/v1/events?room_id=chat")
        t, errors = publish_in_background(gw.port, "chat", 8, 0.1)
        try:
            items = c.collect(1.8)
        finally:
            t.join(scaled(10))
        self.assertFalse(errors, errors)
        events = [i for i in items if isinstance(i, SSEEvent)]
        self.assertEqual(len(events), 8, self._rel(c.retry_t, items))
        self.assertGreaterEqual(len(pings(items)), 2, self._rel(c.retry_t, items))
        self.assertPingsOnTime(c.retry_t, items, "events then silence")

    def test_closed_stream_leaves_without_a_write(self):
        # no heartbeats and no events: only reading the socket notices EOF
        gw = self.cluster.start_gateway("--heartbeat-ms", "0")
        cs = [self.sse(gw, "/api/v1/events?room_id=q%d" % k) for k in range(3)]
        self.assertEqual(harness.get_metrics(gw.port)["roomcast_streams_open"], 3)
        for k, c in enumerate(cs):
            c.close()
            harness.wait_until(lambda: harness.get_metrics(gw.port)["roomcast_streams_open"] == 2 - k,
                               scaled(2), "stream %d leaves the gateway once its client closed" % k)

    def test_no_ping_while_events_flow(self):
        gw = self.cluster.start_gateway("--heartbeat-ms", str(HB_MS))
        c = self.sse(gw, "/api/v1/events?room_id=busy")
        other = self.sse(gw, "/api/v1/events?room_id=quiet")
        stop = threading.Event()
        t, errors = publish_in_background(gw.port, "busy", 100, 0.1, stop)
        try:
            items = c.collect(1.5)
            quiet_items = other.collect(0.1)
        finally:
            stop.set()
            t.join(scaled(10))
        self.assertFalse(errors, errors)
        events = [i for i in items if isinstance(i, SSEEvent)]
        self.assertGreaterEqual(len(events), 8, "the publisher kept up: %r" % (items,))
        # a ping is only right after HB_MS without a byte on the stream: check each against what came before
        prev = None
        for item in items:
            if isinstance(item, SSEComment) and item.text == "ping" and prev is not None:
                gap = item.t - prev.t
                self.assertGreaterEqual(gap, (HB_MS - 60) / 1000.0,
                                        "a ping %.0f ms after the previous message, while events flow: %r" % (
                                            gap * 1000, items))
            prev = item
        # with events every ~100 ms nothing should have been idle long enough
        gaps = [b.t - a.t for a, b in zip(events, events[1:])]
        if max(gaps) < (HB_MS - 100) / 1000.0:
            first = events[0].t
            self.assertEqual([p for p in pings(items) if p.t > first], [],
                             "pings between events arriving every 100 ms: %r" % (items,))
        # meanwhile the idle stream on the same gateway kept getting its pings
        self.assertGreaterEqual(len(pings(quiet_items)), 4, quiet_items)

    def test_heartbeat_zero_disables_pings(self):
        gw = self.cluster.start_gateway("--heartbeat-ms", "0")
        c = self.sse(gw, "/api/v1/events?room_id=idle")
        f = self.sse(gw, "/api/v1/events")
        items = c.collect(1.5) + f.collect(0.1)
        self.assertEqual(items, [])
        self.assertEqual(harness.get_metrics(gw.port)["roomcast_heartbeats_sent_total"], 0)
        # the streams are alive: an event still arrives
        eid = publish(gw.port, {"type": "t", "room_id": "idle"})
        self.assertEqual(c.events(1)[0].id, eid)

    def test_env_var_sets_the_heartbeat(self):
        # every option is also an environment variable; the flag wins over it
        gw = self.cluster.start_gateway(env={"ROOMCAST_HEARTBEAT_MS": str(HB_MS)})
        c = self.sse(gw, "/api/v1/events?room_id=idle")
        gw0 = self.cluster.start_gateway("--heartbeat-ms", "0", env={"ROOMCAST_HEARTBEAT_MS": str(HB_MS)})
        c0 = self.sse(gw0, "/api/v1/events?room_id=idle")
        self.assertGreaterEqual(len(pings(c.collect(1.0))), 2)
        self.assertEqual(c0.collect(0.1), [])


if __name__ == "__main__":
    harness.main()
