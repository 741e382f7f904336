"""
Slow clients: a subscriber that never reads is closed once its unsent output
passes --max-client-buffer (default 1 MiB) while ~20 MB of events flow; the
other subscribers of the same room get every event, in order.
"""

import json
import socket
import threading
import time

import harness
from harness import GatewayTest, SSEEvent, publish, scaled

BATCHES = 100
PER_BATCH = 100
PAD = "x" * 1950  # ~2 KB per event: 100 x 100 x 2 KB = ~20 MB


class Reader(threading.Thread):
    """Reads a stream as fast as it can, keeping only the ids."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.c = client
        self.c.keep_raw(False)
        self.ids = []
        self.bad = []
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            item = self.c.next_item(0.2)
            if item is None:
                if self.c.eof:
                    return
                continue
            if isinstance(item, SSEEvent):
                self.ids.append(item.id)
                if not item.data.startswith('{"type":"bulk"') and '"marker"' not in item.data:
                    self.bad.append(item)


class SlowClientTest(GatewayTest):
    def test_stuck_subscriber_is_closed_others_get_everything(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway()
        port = gw.port

        # the stuck ones: tiny receive buffer, send the request, never recv
        stuck = []
        for path in ["/api/v1/events?room_id=r", "/api/v1/events"]:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect((harness.HOST, port))
            s.sendall(("GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" % path).encode())
            stuck.append(s)
        self.addCleanup(lambda: [s.close() for s in stuck])
        readers = [Reader(self.sse(gw, "/api/v1/events?room_id=r")) for _ in range(2)]
        readers.append(Reader(self.sse(gw, "/api/v1/events?room_id=r,other")))
        harness.wait_until(lambda: harness.get_metrics(port)["roomcast_streams_open"] == 5, scaled(10),
                           "5 open streams")
        for r in readers:
            r.start()

        published = []
        t0 = time.monotonic()
        try:
            for b in range(BATCHES):
                batch = [{"type": "bulk", "room_id": "r", "b": b, "i": i, "pad": PAD} for i in range(PER_BATCH)]
                if b % 10 == 0:
                    # every tenth batch through the CLI (nng api), the rest over HTTP
                    lines = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in batch)
                    res = self.cluster.cli("publish", "--ndjson", stdin=lines)
                    self.assertEqual(res.returncode, 0, res.stderr)
                    ids = res.stdout.split()
                else:
                    ids = publish(port, batch)
                self.assertEqual(len(ids), PER_BATCH)
                published.extend(ids)
                # the readers keep up within a few batches (they are paced, the stuck ones are not)
                lag_ok = len(published) - 3 * PER_BATCH
                harness.wait_until(lambda: all(len(r.ids) >= lag_ok for r in readers), scaled(20),
                                   "the reading subscribers to keep up (batch %d)" % b, interval=0.005)
            marker = publish(port, {"type": "marker"})
            harness.wait_until(lambda: all(r.ids and r.ids[-1] == marker for r in readers), scaled(20),
                               "every reader to get the marker")
        finally:
            for r in readers:
                r.stop.set()
                r.join(scaled(5))
        elapsed = time.monotonic() - t0

        for k, r in enumerate(readers):
            self.assertEqual(r.bad, [], "reader %d" % k)
            self.assertFalse(r.c.eof, "reader %d was closed" % k)
            self.assertEqual(len(r.ids), len(published) + 1, "reader %d got every event" % k)
            self.assertEqual(r.ids, published + [marker], "reader %d: every event, in order" % k)

        m = harness.get_metrics(port)
        self.assertGreaterEqual(m["roomcast_slow_client_closes_total"], 2, m)
        self.assertEqual(m["roomcast_streams_open"], 3, m)
        self.assertGreater(m["roomcast_bytes_delivered_total"], 3 * BATCHES * PER_BATCH * 2000)

        # the stuck connections were closed: after what is buffered, EOF (or a reset)
        for s in stuck:
            total = 0
            ended = False
            s.settimeout(scaled(10))
            for _ in range(100000):
                try:
                    data = s.recv(1 << 20)
                except ConnectionResetError:
                    ended = True
                    break
                except socket.timeout:
                    break
                if not data:
                    ended = True
                    break
                total += len(data)
            self.assertTrue(ended, "the stuck connection is closed by the gateway (read %d bytes)" % total)
            self.assertLess(total, 12 * 1024 * 1024, "the stuck client got far less than everything")
            print("stuck connection: %d bytes then EOF" % total)
        sys_msg = "published %d events (~%d MB) in %.1fs" % (
            len(published), len(published) * 2000 // 1000000, elapsed)
        print(sys_msg)


class BacklogTest(GatewayTest):
    def test_resume_over_a_10mb_backlog(self):
        # the replay comes in pages (a page at a time, after the previous one is written): every event
        # arrives once, in order, then the live ones published meanwhile
        self.cluster.start_broker()
        gw = self.cluster.start_gateway()
        ids = []
        for b in range(50):
            ids += publish(gw.port, [{"type": "bulk", "room_id": "r" if i % 4 else "s", "b": b, "i": i,
                                      "pad": PAD} for i in range(PER_BATCH)])
        want = [eid for k, eid in enumerate(ids) if k % 4 and k > 0]
        c = self.sse(gw, "/api/v1/events?room_id=r", headers={"Last-Event-ID": ids[0]})
        c.keep_raw(False)
        got = [e.id for e in c.events(100, timeout=scaled(20))]
        # live events while the replay is still going
        live = publish(gw.port, [{"type": "bulk", "room_id": "r", "live": i} for i in range(20)])
        marker = publish(gw.port, {"type": "marker"})
        got += [e.id for e in c.events_until(marker, timeout=scaled(30))]
        self.assertEqual(len(got), len(want) + 21)
        self.assertEqual(got, want + live + [marker])
        m = harness.get_metrics(gw.port)
        self.assertGreater(m["roomcast_replays_total"], 2, "a 7.5 MB replay takes several pages")
        self.assertEqual(m["roomcast_slow_client_closes_total"], 0)


if __name__ == "__main__":
    harness.main()
