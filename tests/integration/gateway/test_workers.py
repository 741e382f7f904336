"""
--workers N: N event loops in one gateway process, each with its own
listening socket on the one port (SO_REUSEPORT). Streams land on different
loops and each gets exactly its events, in id order; a resume replays on
whichever loop it lands; /metrics adds the loops' counters up; SIGTERM stops
every loop and the process exits 0; a port that is taken is refused.
"""

import json
import signal
import socket

import harness
from harness import GatewayTest, publish, scaled


def listening_sockets(port):
    """Listening TCP sockets on 127.0.0.1:port, from /proc/net/tcp."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            addr, state = cols[1], cols[3]
            if state == "0A" and addr == "0100007F:%04X" % port:
                n += 1
    return n


class WorkersTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway("--workers", "3")

    def metrics_until(self, pred, what):
        got = {}

        def ok():
            got.clear()
            got.update(harness.get_metrics(self.gw.port))
            return pred(got)

        # each loop copies its counters every 200 ms
        harness.wait_until(ok, scaled(10), what)
        return got

    def test_streams_on_every_loop_get_their_events_in_order(self):
        self.assertEqual(listening_sockets(self.gw.port), 3)
        rooms = ["a", "b", "c"]
        per_room = {r: [self.sse(self.gw, "/api/v1/events?room_id=" + r) for _ in range(8)] for r in rooms}
        # 8 streams of a room over 3 loops: each loop with one subscribes the room
        m = self.metrics_until(lambda m: m.get("roomcast_streams_open") == 24, "the room streams counted")
        self.assertEqual(m["roomcast_gateway_workers"], 3)
        self.assertGreaterEqual(m["roomcast_bus_rooms_subscribed"], 2 * len(rooms) - 1,
                                "streams spread over the loops")
        fire = [self.sse(self.gw, "/api/v1/events") for _ in range(4)]
        pair = [self.sse(self.gw, "/api/v1/events?room_id=a,c") for _ in range(4)]
        self.metrics_until(lambda m: m.get("roomcast_streams_open") == 32, "every stream counted")

        def batch(k, i):
            events = [{"type": "w", "room_id": rooms[(k + i) % 3], "k": k, "i": i}]
            if i % 4 == 0:
                events.append({"type": "w.global", "k": k, "i": i})
            return events

        # the POSTs land on any loop
        published = harness.publish_concurrently(self.gw.port, 3, 20, batch)
        marker = publish(self.gw.port, {"type": "marker"})

        def want(keep):
            return [i for i, ev in published if keep(ev.get("room_id"))] + [marker]

        delivered = 0
        for room, streams in per_room.items():
            ids = want(lambda r: r in (room, None))
            for c in streams:
                self.assertEqual([e.id for e in c.events_until(marker)], ids, room)
                delivered += len(ids)
        for c in fire:
            got = c.events_until(marker)
            self.assertEqual([e.id for e in got], want(lambda r: True))
            self.assertEqual([json.loads(e.data) for e in got[:-1]], [ev for _, ev in published])
            delivered += len(got)
        for c in pair:
            ids = want(lambda r: r in ("a", "c", None))
            self.assertEqual([e.id for e in c.events_until(marker)], ids)
            delivered += len(ids)
        self.metrics_until(lambda m: m.get("roomcast_events_delivered_total") == delivered,
                           "events_delivered_total summed over the loops (%d)" % delivered)
        m = self.metrics_until(lambda m: m.get("roomcast_published_events_total") == len(published) + 1,
                               "published events summed over the loops")

    def test_resume_replays_on_any_loop(self):
        first = self.sse(self.gw, "/api/v1/events?room_id=r")
        ids = publish(self.gw.port, [{"type": "t", "room_id": "r", "i": i} for i in range(30)])
        self.assertEqual([e.id for e in first.events(30)], ids)
        # new connections hash to any of the loops: every one replays exactly the rest
        for k in range(12):
            c = self.sse(self.gw, "/api/v1/events?room_id=r", headers={"Last-Event-ID": ids[k]})
            self.assertEqual([e.id for e in c.events(29 - k)], ids[k + 1:], "resume after %d" % k)
            c.close()

    def test_sigterm_stops_every_loop(self):
        streams = [self.sse(self.gw, "/api/v1/events?room_id=s%d" % (i % 3)) for i in range(12)]
        self.metrics_until(lambda m: m.get("roomcast_streams_open") == 12, "12 streams")
        self.gw.proc.signal(signal.SIGTERM)
        self.assertExitsOnSignal(self.gw.proc, 5.0)
        for i, c in enumerate(streams):
            self.assertTrue(c.wait_eof(scaled(2)), "stream %d sees the end" % i)
        log = self.gw.proc.log()
        for w in range(3):
            self.assertIn("gateway stopped\" worker=%d clean=true" % w, log)
        with self.assertRaises(OSError):
            socket.create_connection((harness.HOST, self.gw.port), timeout=1).close()


class WorkersPortTest(GatewayTest):
    def test_a_taken_port_is_refused(self):
        self.cluster.start_broker()
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(holder.close)
        holder.bind((harness.HOST, 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        b = self.cluster.broker
        p = self.cluster._start("gateway", [harness.GATEWAY_BIN, "--listen", "%s:%d" % (harness.HOST, port),
                                            "--broker-bus", b.bus, "--broker-api", b.api, "--workers", "2"])
        self.assertEqual(p.wait_exit(scaled(10)), 1)
        self.assertIn("cannot listen", p.log())


if __name__ == "__main__":
    harness.main()
