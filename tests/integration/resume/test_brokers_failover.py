"""
Two brokers active-active on one NATS JetStream stream (--store nats), one
gateway dialing both (--broker-bus A,B --broker-api A,B): 4 publishers POST
at a steady rate through the gateway while one broker is SIGKILLed. Then:

- every POST was answered 201: those in flight when the broker died were
  sent again to the other broker with their idempotency key (the gateway's
  own when the POST had none), not answered 504;
- every id answered 201 reaches each of 20 streams that covers its room
  exactly once and in order (one sequence: the two brokers' buses carry the
  same gseqs, the gateway takes each once);
- no stream.reset.

The longest time a stream went without an event is printed (the failover's
stall as a subscriber sees it).

Skipped (exit 77, with the reason) when nats-server is not installed or
roomcast-broker has no --store nats.
"""

import os
import re
import sys
import threading
import time
import unittest

from resume_util import (StreamTest, FastStream, KeepAlivePoster, Recorder, check_deliveries, harness, pump, scaled,
                         FAILOVER_ROOMS as ROOMS, failover_stream_specs as stream_specs,
                         nats_store_skip_reason as skip_reason)

PUBLISHERS = 4
REQUESTS = 150  # per publisher
BATCH = 3       # events per POST
PAUSE = 0.004   # between a publisher's POSTs: a steady rate, not a burst


class BrokersFailoverTest(StreamTest):
    def setUp(self):
        super().setUp()
        self.nats = None

    def tearDown(self):
        # nats-server exits 1 on SIGTERM: stopped here, after the brokers, not by the harness's checks
        procs = self.cluster.procs
        if self.nats in procs:
            procs.remove(self.nats)
        try:
            super().tearDown()
        finally:
            if self.nats is not None:
                self.nats.stop()
                procs.append(self.nats)  # its log is printed with the others when the test failed

    def start_nats(self):
        d = os.path.join(self.cluster.dir, "jetstream")
        os.makedirs(d)
        self.nats = self.cluster._start("nats", ["nats-server", "-js", "-a", harness.HOST, "-p", "-1", "-sd", d])
        m = harness.wait_until(
            lambda: re.search(r"Listening for client connections on \S+:(\d+)", self.nats.log()), scaled(15),
            "nats-server to listen")
        return "nats://%s:%s" % (harness.HOST, m.group(1))

    def test_sigkill_one_broker_while_publishing(self):
        c = self.cluster
        nats_url = self.start_nats()
        nats_opts = ["--store", "nats", "--nats-url", nats_url, "--nats-stream", "roomcast-failover"]
        brokers = [c.start_broker(*nats_opts), c.start_broker(*nats_opts)]
        gw = c.start_gateway("--publish-timeout-ms", str(int(scaled(5) * 1000)),
                             bus=",".join(b.bus for b in brokers), api=",".join(b.api for b in brokers))

        recorders = []
        for k, rooms in enumerate(stream_specs()):
            rec = Recorder(rooms)
            recorders.append(rec)
            self._fast.append(FastStream(gw.port, "/api/v1/events?room_id=" + ",".join(rooms), on_event=rec,
                                         name="s%d" % k))
        for s in self._fast:
            s.wait_open()

        acked = []  # (id, event)
        lock = threading.Lock()
        errors = []
        killed = threading.Event()
        kill_after = PUBLISHERS * REQUESTS * BATCH // 3

        def publisher(p):
            poster = KeepAlivePoster(gw.port, timeout=scaled(30))
            try:
                for r in range(REQUESTS):
                    evs = [{"type": "t", "room_id": ROOMS[(p + r + b) % 4], "pub": p, "r": r, "b": b}
                           for b in range(BATCH)]
                    body = poster.post(evs)  # raises unless 201
                    with lock:
                        acked.extend(zip(body["ids"], evs))
                    time.sleep(PAUSE)
            except Exception as e:
                errors.append("publisher %d: %r" % (p, e))
            finally:
                poster.close()

        def killer():
            harness.wait_until(lambda: len(acked) >= kill_after or errors, scaled(60), "a third of the events")
            brokers[0].proc.kill()  # SIGKILL, POSTs in flight
            killed.set()

        threads = [threading.Thread(target=publisher, args=(p,), daemon=True) for p in range(PUBLISHERS)]
        kt = threading.Thread(target=killer, daemon=True)
        kt.start()
        for t in threads:
            t.start()

        def expected(rec):
            return sum(1 for _, e in acked if e["room_id"] in rec.rooms)

        def done():
            if errors:
                raise AssertionError("; ".join(errors))
            if kt.is_alive() or any(t.is_alive() for t in threads):
                return False
            return all(len(r.events) >= expected(r) for r in recorders)

        try:
            pump(self._fast, done, scaled(90), "every acknowledged event on every stream",
                 status=lambda: "acked %d, streams %r" % (len(acked), [len(r.events) for r in recorders]))
        finally:
            kt.join(scaled(10))
            for t in threads:
                t.join(scaled(10))
        for s in self._fast:
            s.read_some(64)  # nothing more: no copy arrives late
        self.assertTrue(killed.is_set())
        self.assertEqual(len(acked), PUBLISHERS * REQUESTS * BATCH)

        stall, _, _ = check_deliveries(acked, recorders, fields=("room_id", "pub", "r", "b"))
        retries = harness.get_metrics(gw.port).get("roomcast_gateway_api_retries_total", 0)
        sys.stderr.write("\n%d events, %d streams, longest time a stream went without an event: %.0f ms, "
                         "api requests sent again: %d\n" % (len(acked), len(recorders), stall * 1000, retries))


if __name__ == "__main__":
    why = skip_reason()
    if why is not None:
        print("skipped: " + why)
        sys.exit(77)
    unittest.main()
