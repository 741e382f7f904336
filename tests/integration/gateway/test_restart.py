"""
Restarts and stops under traffic: a broker restarted without its history
(new epoch) resets the gateway's streams with epoch_changed and they go on
live; a resume with an id of the old epoch resets too; a gateway stopped
while publishes and resumes are in flight still exits 0 within 5 s.
"""

import json
import signal
import threading
import time

import harness
from harness import GatewayTest, SSEClient, parse_id, publish, post_json, request, scaled


class RestartTest(GatewayTest):
    def restart_broker(self):
        old = self.cluster.broker
        self.assertEqual(old.proc.stop(), 0, "the broker exits 0 on SIGTERM")
        return self.cluster.start_broker(bus=old.bus, api=old.api)

    def test_broker_restart_resets_streams_with_epoch_changed(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway()
        c = self.sse(gw, "/api/v1/events?room_id=a")
        f = self.sse(gw, "/api/v1/events")
        old_ids = publish(gw.port, [{"type": "old", "room_id": "a", "i": i} for i in range(3)])
        self.assertEqual([e.id for e in c.events(3)], old_ids)
        self.assertEqual([e.id for e in f.events(3)], old_ids)
        old_epoch = parse_id(old_ids[0])[0]

        self.restart_broker()
        # the gateway reconnects by itself (both the bus and the api)
        harness.wait_until(lambda: request(gw.port, "GET", "/readyz", timeout=2).status == 200, scaled(15),
                           "the gateway to reconnect to the restarted broker")

        def publish_when_accepted():
            r = post_json(gw.port, {"type": "new", "room_id": "a"})
            return r.json()["id"] if r.status == 201 else None
        new_id = harness.wait_until(publish_when_accepted, scaled(10), "a publish to the new broker")
        new_epoch = parse_id(new_id)[0]
        self.assertNotEqual(new_epoch, old_epoch, "a broker restarted without storage has a new epoch")

        for name, s in [("room a", c), ("firehose", f)]:
            got = s.events_until(new_id, timeout=scaled(15))
            resets = [e for e in got if json.loads(e.data).get("type") == "stream.reset"]
            self.assertEqual(len(resets), 1, "%s: one reset before the new epoch's events: %r" % (name, got))
            self.assertEqual(json.loads(resets[0].data), {"type": "stream.reset", "reason": "epoch_changed"})
            self.assertEqual(parse_id(resets[0].id)[0], new_epoch, "the reset carries an id of the new epoch")
            self.assertIs(got[0], resets[0], "%s: the reset comes first" % name)
            self.assertEqual(got[-1].id, new_id)
            self.assertEqual(json.loads(got[-1].data), {"type": "new", "room_id": "a"})
        # and live after that
        more = publish(gw.port, {"type": "more", "room_id": "a"})
        self.assertEqual(c.events(1)[0].id, more)
        # a client resuming with an id of the old epoch is told so
        r = self.sse(gw, "/api/v1/events?room_id=a", headers={"Last-Event-ID": old_ids[-1]})
        first = r.events(1)[0]
        self.assertEqual(json.loads(first.data), {"type": "stream.reset", "reason": "epoch_changed"})
        self.assertEqual(first.id, more, "the reset carries the current last id")
        m = harness.get_metrics(gw.port)
        self.assertGreaterEqual(m['roomcast_stream_resets_total{reason="epoch_changed"}'], 3)

    def test_gateway_restart_clients_resume(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway()
        c = self.sse(gw, "/api/v1/events?room_id=a")
        first = publish(gw.port, [{"type": "p", "room_id": "a", "i": i} for i in range(3)])
        got = c.events(3)
        self.assertEqual(gw.proc.stop(), 0)
        self.assertTrue(c.wait_eof(scaled(5)))
        # published while no gateway runs: nothing is lost for a client that resumes
        missed = self.cluster.cli("publish", "--room", "a", "--type", "while.down")
        self.assertEqual(missed.returncode, 0, missed.stderr)
        gw2 = self.cluster.start_gateway()
        c2 = self.sse(gw2, "/api/v1/events?room_id=a", headers={"Last-Event-ID": got[-1].id})
        live = publish(gw2.port, {"type": "p", "room_id": "a"})
        self.assertEqual([e.id for e in c2.events(2)], [missed.stdout.strip(), live])
        self.assertEqual(first, [e.id for e in got])


class StopUnderLoadTest(GatewayTest):
    def test_sigterm_while_publishing_and_resuming(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway()
        ids = publish(gw.port, [{"type": "h", "room_id": "r%d" % (i % 3), "pad": "p" * 500} for i in range(1000)])
        streams = [self.sse(gw, "/api/v1/events?room_id=r%d" % (i % 3)) for i in range(10)]
        stop = threading.Event()
        counts = {"ok": 0, "err": 0}

        def publisher():
            while not stop.is_set():
                try:
                    r = post_json(gw.port, [{"type": "l", "room_id": "r1"}] * 20, timeout=scaled(5))
                    counts["ok" if r.status == 201 else "err"] += 1
                except (OSError, harness.http.client.HTTPException):
                    counts["err"] += 1
                    time.sleep(0.01)

        def resumer():
            while not stop.is_set():
                c = None
                try:
                    c = SSEClient(gw.port, "/api/v1/events?room_id=r0,r2", headers={"Last-Event-ID": ids[0]})
                    c.read_body_bytes(2000, timeout=scaled(5))
                except (OSError, AssertionError):
                    time.sleep(0.01)
                finally:
                    if c is not None:
                        c.close()

        threads = [threading.Thread(target=publisher) for _ in range(3)] + [threading.Thread(target=resumer)]
        for t in threads:
            t.start()
        try:
            harness.wait_until(lambda: counts["ok"] >= 10, scaled(10), "publishes to flow")
            t0 = time.monotonic()
            gw.proc.signal(signal.SIGTERM)
            rc = gw.proc.wait(5.0)
            elapsed = time.monotonic() - t0
        finally:
            stop.set()
            for t in threads:
                t.join(scaled(10))
        if rc is None:
            rc = self.assertExitsOnSignal(gw.proc, 0.1, waited=5.0)  # fails, with the stacks
        self.assertEqual(rc, 0, "exit code after SIGTERM under load (a sanitizer report makes it non-zero)")
        for s in streams:
            self.assertTrue(s.wait_eof(scaled(5)))
        print("stopped in %.2fs after %r" % (elapsed, counts))

    def test_broker_sigterm_with_gateways_attached(self):
        self.cluster.start_broker()
        gws = [self.cluster.start_gateway() for _ in range(2)]
        streams = [self.sse(g, "/api/v1/events") for g in gws]
        eid = publish(gws[0].port, {"type": "t"})
        for s in streams:
            self.assertEqual(s.events(1)[0].id, eid)
        self.assertEqual(self.cluster.broker.proc.stop(scaled(5)), 0)
        # the gateways live on, report not ready, refuse publishes, keep their streams
        for g in gws:
            harness.wait_until(lambda: request(g.port, "GET", "/readyz").status == 503, scaled(10), "503")
            self.assertEqual(post_json(g.port, {"type": "t"}).status, 503)
        for s in streams:
            self.assertIsNone(s.next_item(0.2))
            self.assertFalse(s.eof)


if __name__ == "__main__":
    harness.main()
