"""
Slow clients: a subscriber that stops reading while many events flow is
closed by the gateway once its unsent output passes --max-client-buffer
(64 KiB here). It then reads what its socket still holds, reconnects with
Last-Event-ID = the id of the last event it received completely (a partial
message at the cut is discarded), and ends up with every event exactly once,
in order, while publishing goes on. A subscriber that keeps reading gets
everything too (it may be cut as well when the test machine is busy: it
resumes the same way).
"""

import json
import threading
import time

from resume_util import StreamTest, ResumingSubscriber, harness, metric, pump, scaled

ROOM = "room-slow"
BATCH = 100
PAD = "x" * 300


class Collector:
    def __init__(self):
        self.events = []

    def __call__(self, eid, data):
        self.events.append((eid.decode("ascii"), data))


class Publisher(threading.Thread):
    """Publishes batches of BATCH events until told to stop or max_batches; one thread keeps id order."""

    def __init__(self, port, max_batches):
        super().__init__(daemon=True)
        self.port = port
        self.max_batches = max_batches
        self.published = []  # (id, event)
        self.stop_after = None  # stop once this many batches are out
        self.error = None
        self.batches = 0

    def run(self):
        try:
            while self.batches < self.max_batches:
                if self.stop_after is not None and self.batches >= self.stop_after:
                    return
                evs = [{"type": "slow", "room_id": ROOM, "n": len(self.published) + i, "pad": PAD}
                       for i in range(BATCH)]
                ids = harness.publish(self.port, evs)
                self.published += list(zip(ids, evs))
                self.batches += 1
                time.sleep(0.005)
        except Exception as e:  # reported by the test
            self.error = e


class SlowClientTest(StreamTest):
    def test_slow_client_is_closed_and_resumes_with_everything(self):
        c = self.cluster
        c.start_broker()
        gw = c.start_gateway("--max-client-buffer", "65536", "--heartbeat-ms", "0")
        path = "/api/v1/events?room_id=" + ROOM

        slow_got, fast_got = Collector(), Collector()
        slow = ResumingSubscriber([gw.port], path, slow_got, rcvbuf=4096, name="slow")
        fast = ResumingSubscriber([gw.port], path, fast_got, name="fast")
        self._fast = [slow, fast]
        slow.cur.wait_open()
        fast.cur.wait_open()
        slow.paused = True  # stops reading: its socket fills, then the gateway's queue

        pub = Publisher(gw.port, max_batches=400)
        pub.start()
        try:
            state = {"t": 0.0, "closed": False}

            def idle():
                changed = fast.reconnect_if_closed()
                now = time.monotonic()
                if now - state["t"] > 0.1:
                    state["t"] = now
                    fast_closes = fast.reconnects + (1 if fast.cur.eof else 0)
                    state["closed"] = metric(gw.port, "roomcast_slow_client_closes_total") > fast_closes
                if pub.error is not None:
                    raise pub.error
                return changed

            pump([slow, fast], lambda: state["closed"], scaled(30), "the gateway to close the slow client",
                 idle=idle)
            # events keep flowing while the slow client comes back
            pub.stop_after = pub.batches + 20
            slow.paused = False

            def idle2():
                if pub.error is not None:
                    raise pub.error
                a = slow.reconnect_if_closed()
                b = fast.reconnect_if_closed()
                return a or b

            def done():
                if pub.is_alive():
                    return False
                n = len(pub.published)
                return len(slow_got.events) >= n and len(fast_got.events) >= n

            def status():
                return "published %d (publisher alive: %s), slow got %d (reconnects %d, eof %s), fast got %d " \
                       "(reconnects %d); metrics %r" % (
                           len(pub.published), pub.is_alive(), len(slow_got.events), slow.reconnects, slow.cur.eof,
                           len(fast_got.events), fast.reconnects,
                           {k: v for k, v in harness.get_metrics(gw.port).items() if v and "http" not in k})

            pump([slow, fast], done, scaled(40), "both subscribers to get every event", idle=idle2, status=status)
        finally:
            pub.stop_after = 0
            pub.join(scaled(20))
        self.assertIsNone(pub.error)
        time.sleep(0.2)
        for s in (slow, fast):
            if not s.cur.eof:
                s.cur.read_some(64)

        want = pub.published
        for name, got in (("slow", slow_got), ("fast", fast_got)):
            ids = [i for i, _ in got.events]
            self.assertEqual(len(ids), len(set(ids)), "%s: no duplicates" % name)
            self.assertEqual(ids, [i for i, _ in want], "%s: every event, in order" % name)
            self.assertEqual([json.loads(d) for _, d in got.events], [e for _, e in want], name)
        m = harness.get_metrics(gw.port)
        self.assertGreaterEqual(slow.reconnects, 1, "the slow client was closed and reconnected")
        self.assertGreaterEqual(m["roomcast_slow_client_closes_total"], 1)
        self.assertEqual(sum(v for k, v in m.items() if k.startswith("roomcast_stream_resets_total")), 0)
        print("\nslow client: %d events, slow reconnects %d, fast reconnects %d, slow closes %d"
              % (len(want), slow.reconnects, fast.reconnects, m["roomcast_slow_client_closes_total"]))

if __name__ == "__main__":
    harness.main()
