"""
The broker's storage on a gateway's /metrics: the first loop of each gateway
asks the broker for its stats every --broker-stats-ms and /metrics shows the
latest answer (roomcast_broker_*: the store's bytes, segments, oldest gseq,
fsyncs and their seconds, errors, recovery time, the history's size, the store
kind as an info metric) with its age; nothing before the broker ever
answered, a growing age once it stops answering, nothing with 0.
"""

import json
import os
import signal

import harness
from harness import GatewayTest, scaled

STATS_MS = "100"


def broker_lines(port):
    """
    The roomcast_broker_* samples of /metrics, of the one broker (--broker-api
    with one address: broker="0", the label every sample starts with),
    named without that label.
    """
    out = {}
    for k, v in harness.get_metrics(port).items():
        if not k.startswith("roomcast_broker_"):
            continue
        name, brace, labels = k.partition("{")
        first, _, rest = labels[:-1].partition(",")
        if not brace or first != 'broker="0"':
            raise AssertionError("a roomcast_broker_* sample without broker=\"0\" first: %s" % k)
        out[name + ("{%s}" % rest if rest else "")] = v
    return out


def info_of(m):
    """The one roomcast_broker_store_info sample's labels, as a dict."""
    keys = [k for k in m if k.startswith("roomcast_broker_store_info{")]
    if len(keys) != 1:
        raise AssertionError("expected one roomcast_broker_store_info sample, got %r" % keys)
    labels = keys[0][len("roomcast_broker_store_info{"):-1]
    out = {}
    for part in labels.split(","):
        k, v = part.split("=", 1)
        out[k] = json.loads(v)
    return out


def ev(i, pad=200):
    return {"type": "t", "room_id": "room-%d" % (i % 3), "i": i, "pad": "p" * pad}


class BrokerMetricsTest(GatewayTest):
    def stats(self):
        r = self.cluster.cli("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def wait_metrics(self, port, pred, what):
        """Polls /metrics until pred(broker samples) holds; returns those samples."""
        return harness.wait_until(lambda: (lambda m: m if pred(m) else None)(broker_lines(port)), scaled(10), what)

    def test_storage_figures_follow_the_log(self):
        c = self.cluster
        data = os.path.join(c.dir, "data")
        c.start_broker("--data-dir", data, "--segment-bytes", "4096", "--fsync", "always")
        gw = c.start_gateway("--broker-stats-ms", STATS_MS)
        m0 = self.wait_metrics(gw.port, lambda m: "roomcast_broker_stats_age_seconds" in m, "the first answer")
        st = self.stats()
        self.assertEqual(info_of(m0), {"store": "file", "fsync": "always", "epoch": st["epoch"]})
        self.assertEqual(m0["roomcast_broker_store_segments"], 1)
        self.assertEqual(m0["roomcast_broker_store_bytes"], 16, "a segment's header")
        self.assertEqual(m0["roomcast_broker_store_oldest_gseq"], 1)
        self.assertEqual(m0["roomcast_broker_store_fsyncs_total"], 0)
        self.assertEqual(m0["roomcast_broker_history_events"], 0)
        self.assertEqual(m0["roomcast_broker_last_gseq"], 0)
        self.assertGreaterEqual(m0["roomcast_broker_store_recovery_seconds"], 0)
        self.assertLess(m0["roomcast_broker_stats_age_seconds"], scaled(2))

        # 60 events of ~300 bytes in 6 publishes: ~18 KB, five segments or so
        for k in range(6):
            harness.publish(gw.port, [ev(k * 10 + i) for i in range(10)])
        m1 = self.wait_metrics(gw.port, lambda m: m.get("roomcast_broker_last_gseq") == 60, "the figures after 60")
        st = self.stats()["store"]
        self.assertEqual(m1["roomcast_broker_store_bytes"], st["bytes"])
        self.assertGreater(m1["roomcast_broker_store_bytes"], 60 * 250)
        self.assertEqual(m1["roomcast_broker_store_segments"], st["segments"])
        self.assertGreater(m1["roomcast_broker_store_segments"], 2)
        self.assertEqual(m1["roomcast_broker_store_oldest_gseq"], 1)
        self.assertEqual(m1["roomcast_broker_history_events"], 60)
        self.assertGreater(m1["roomcast_broker_history_bytes"], 60 * 200)
        # --fsync always: every publish waited for an fdatasync
        self.assertGreaterEqual(m1["roomcast_broker_store_fsyncs_total"], 6)
        self.assertEqual(m1["roomcast_broker_store_fsyncs_total"], st["fsyncs"])
        self.assertGreater(m1["roomcast_broker_store_fsync_seconds_total"], 0)
        self.assertGreaterEqual(m1["roomcast_broker_store_fsync_max_seconds"],
                                m1["roomcast_broker_store_fsync_last_seconds"])
        self.assertAlmostEqual(m1["roomcast_broker_store_fsync_max_seconds"], st["fsync_us_max"] / 1e6, places=6)
        self.assertEqual(m1["roomcast_broker_store_write_errors_total"], 0)
        self.assertEqual(m1["roomcast_broker_store_fsync_errors_total"], 0)

        # a restart on the same directory: the relay picks the new broker up, recovery and all
        old = c.broker
        old.proc.kill()
        c.start_broker("--data-dir", data, "--segment-bytes", "4096", bus=old.bus, api=old.api)
        st = self.stats()
        self.assertEqual(st["history"]["events"], 60)
        m2 = self.wait_metrics(gw.port, lambda m: info_of(m).get("fsync") == "interval", "the restarted broker")
        self.assertEqual(info_of(m2)["epoch"], info_of(m0)["epoch"], "the epoch survived")
        self.assertEqual(m2["roomcast_broker_history_events"], 60)
        self.assertEqual(m2["roomcast_broker_store_bytes"], m1["roomcast_broker_store_bytes"])
        self.assertEqual(m2["roomcast_broker_store_fsyncs_total"], 0, "a new process counts afresh")
        self.assertAlmostEqual(m2["roomcast_broker_store_recovery_seconds"],
                               st["store"]["recovery_ms"] / 1000.0, places=3)

    def test_memory_broker_shows_its_history_only(self):
        c = self.cluster
        c.start_broker()
        gw = c.start_gateway("--broker-stats-ms", STATS_MS)
        m = self.wait_metrics(gw.port, lambda m: "roomcast_broker_stats_age_seconds" in m, "the first answer")
        self.assertEqual(info_of(m), {"store": "memory", "epoch": self.stats()["epoch"]})
        self.assertNotIn("roomcast_broker_store_bytes", m)
        harness.publish(gw.port, [ev(i) for i in range(5)])
        m = self.wait_metrics(gw.port, lambda m: m.get("roomcast_broker_history_events") == 5, "5 events")
        self.assertEqual(m["roomcast_broker_last_gseq"], 5)
        self.assertEqual([k for k in m if "_store_" in k and "_info" not in k], [])

    def test_nothing_before_an_answer_then_a_growing_age(self):
        c = self.cluster
        c.start_broker("--data-dir", os.path.join(c.dir, "data"))
        # no broker on this api address: the gateway never gets an answer
        lone = c.start_gateway("--broker-stats-ms", STATS_MS, api="tcp://127.0.0.1:%d" % harness.free_port(),
                               ready=False)
        gw = c.start_gateway("--broker-stats-ms", STATS_MS)
        self.wait_metrics(gw.port, lambda m: "roomcast_broker_store_bytes" in m, "the first answer")
        self.assertEqual(broker_lines(lone.port), {}, "no figures without an answer")
        # the broker stops answering: the last figures stay, their age grows
        c.broker.proc.signal(signal.SIGSTOP)
        try:
            m = self.wait_metrics(gw.port, lambda m: m["roomcast_broker_stats_age_seconds"] > 1.0, "a stale age")
            self.assertIn("roomcast_broker_store_bytes", m)
        finally:
            c.broker.proc.signal(signal.SIGCONT)
        self.wait_metrics(gw.port, lambda m: m["roomcast_broker_stats_age_seconds"] < 0.5, "a fresh answer again")
        self.assertEqual(broker_lines(lone.port), {})

    def test_zero_turns_the_relay_off(self):
        c = self.cluster
        c.start_broker("--data-dir", os.path.join(c.dir, "data"))
        off = c.start_gateway("--broker-stats-ms", "0")
        on = c.start_gateway("--broker-stats-ms", STATS_MS)
        self.wait_metrics(on.port, lambda m: "roomcast_broker_store_bytes" in m, "the figures on the other")
        self.assertEqual(broker_lines(off.port), {})
        self.assertIn("roomcast_streams_open", harness.get_metrics(off.port))

    def test_every_worker_shows_the_figures(self):
        c = self.cluster
        c.start_broker("--data-dir", os.path.join(c.dir, "data"))
        gw = c.start_gateway("--broker-stats-ms", STATS_MS, "--workers", "2")
        self.wait_metrics(gw.port, lambda m: "roomcast_broker_store_bytes" in m, "the first answer")
        harness.publish(gw.port, [ev(i) for i in range(3)])
        self.wait_metrics(gw.port, lambda m: m.get("roomcast_broker_history_events") == 3, "3 events")
        # new connections spread over both loops (SO_REUSEPORT): each answers with the figures
        for _ in range(20):
            m = broker_lines(gw.port)
            self.assertIn("roomcast_broker_store_bytes", m)
            self.assertLess(m["roomcast_broker_stats_age_seconds"], scaled(2))

    def test_the_gateway_stops_cleanly_with_the_relay_running(self):
        c = self.cluster
        c.start_broker()
        gw = c.start_gateway("--broker-stats-ms", "1")
        self.wait_metrics(gw.port, lambda m: "roomcast_broker_stats_age_seconds" in m, "the first answer")
        self.assertEqual(gw.proc.stop(), 0)
        self.assertIn('msg="gateway stopped" worker=0 clean=true', gw.proc.log())


if __name__ == "__main__":
    harness.main()
