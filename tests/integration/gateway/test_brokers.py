"""
--broker-bus and --broker-api given lists, against the real broker (what a
gateway does with several brokers; the failover itself, with brokers on one
JetStream stream, is resume/test_brokers_failover.py):

- one broker listed twice in each list: the gateway follows two buses that
  carry the same gseqs (as the brokers of one stream do) and every event
  reaches a stream once, in order; POSTs without a key get the gateway's
  (the broker takes it: 201), and the same POST body twice is two events
  (each POST its own keys); /metrics shows each address's state;
- a list with an empty item is refused at start (exit 2);
- the other bus's broker unreachable: the gateway is ready with one, and
  says which one is connected;
- one broker's process stopped (SIGSTOP: its connection stays up and nothing
  answers, like a host cut off): every POST is answered 201 within a few
  seconds, its re-send going to the other broker (--api-retry-ms caps the
  first attempt), not after half of --publish-timeout-ms.
"""

import json
import signal
import time
import unittest

import harness
from harness import GatewayTest, get_metrics, post_json, scaled, wait_until


class BrokerListsTest(GatewayTest):
    def test_one_broker_listed_twice_each_event_once(self):
        c = self.cluster
        b = c.start_broker()
        gw = c.start_gateway(bus=b.bus + "," + b.bus, api=b.api + ", " + b.api)
        wait_until(lambda: get_metrics(gw.port).get('roomcast_gateway_bus_connected{broker="1"}') == 1, scaled(10),
                   "both buses connected")
        s = self.sse(gw, "/api/v1/events?room_id=a")
        ids = []
        for i in range(60):
            evs = [{"type": "t", "room_id": "a", "i": i, "j": j} for j in range(1 + i % 4)]
            r = post_json(gw.port, evs if i % 2 else evs[0])
            self.assertEqual(r.status, 201, r.body)
            body = r.json()
            ids += body["ids"] if "ids" in body else [body["id"]]
        # the same body twice: two POSTs, two events (the keys the gateway gives are its POSTs', not the body's)
        twice = [post_json(gw.port, {"type": "same", "room_id": "a"}) for _ in range(2)]
        self.assertEqual([r.status for r in twice], [201, 201])
        ids += [r.json()["id"] for r in twice]
        self.assertEqual(len(set(ids)), len(ids), "each POST's events published once each")
        got = s.events(len(ids), timeout=scaled(20))
        self.assertEqual([e.id for e in got], ids)
        self.assertEqual(s.collect(0.3), [], "nothing twice")
        m = get_metrics(gw.port)
        self.assertEqual(m['roomcast_gateway_bus_connected{broker="0"}'], 1)
        self.assertEqual(m['roomcast_gateway_api_connected{broker="1"}'], 1)
        self.assertGreater(m["roomcast_bus_merge_duplicates_total"], 0)
        self.assertEqual(m["roomcast_gaps_detected_total"], 0)
        self.assertEqual(m["roomcast_gateway_api_retries_total"], 0)

    def test_empty_item_refused(self):
        c = self.cluster
        b = c.start_broker()
        p = c._start("gateway", [harness.GATEWAY_BIN, "--listen", "%s:0" % harness.HOST, "--broker-bus",
                                 b.bus + ",", "--broker-api", b.api])
        self.assertEqual(p.wait(scaled(10)), 2)
        self.assertIn("--broker-bus: expected 1-8 addresses", p.log())

    def test_ready_with_one_broker_of_two(self):
        c = self.cluster
        b = c.start_broker()
        down = "tcp://%s:%d" % (harness.HOST, harness.free_port())
        gw = c.start_gateway(bus=down + "," + b.bus, api=down + "," + b.api)
        r = harness.request(gw.port, "GET", "/readyz")
        self.assertEqual(r.status, 200, r.body)
        m = get_metrics(gw.port)
        self.assertEqual(m['roomcast_gateway_bus_connected{broker="0"}'], 0)
        self.assertEqual(m['roomcast_gateway_bus_connected{broker="1"}'], 1)
        self.assertEqual(m['roomcast_gateway_api_connected{broker="0"}'], 0)
        self.assertEqual(m['roomcast_gateway_api_connected{broker="1"}'], 1)
        r = post_json(gw.port, {"type": "t", "room_id": "a"})
        self.assertEqual(r.status, 201, r.body)

    def test_silent_broker_skipped(self):
        c = self.cluster
        hung = c.start_broker()
        live = c.start_broker()
        gw = c.start_gateway("--publish-timeout-ms", "20000", "--api-retry-ms", "500", bus=live.bus,
                             api=hung.api + "," + live.api)
        wait_until(lambda: get_metrics(gw.port).get('roomcast_gateway_api_connected{broker="0"}') == 1, scaled(10),
                   "both apis connected")
        s = self.sse(gw, "/api/v1/events?room_id=a")
        hung.proc.signal(signal.SIGSTOP)
        try:
            ids, took = [], []
            for i in range(8):
                t0 = time.monotonic()
                r = post_json(gw.port, {"type": "t", "room_id": "a", "i": i}, timeout=scaled(30))
                took.append(round(time.monotonic() - t0, 2))
                self.assertEqual(r.status, 201, r.body)
                ids.append(r.json()["id"])
            self.assertLess(max(took), scaled(5), "seconds per POST: %s" % took)
            got = s.events(len(ids), timeout=scaled(10))
            self.assertEqual([e.id for e in got], ids)
            self.assertGreater(get_metrics(gw.port)["roomcast_gateway_api_retries_total"], 0)
        finally:
            hung.proc.signal(signal.SIGCONT)


if __name__ == "__main__":
    unittest.main()
