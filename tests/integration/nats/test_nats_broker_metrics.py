"""
Several brokers (--store nats) behind one gateway: its /metrics shows each
broker's figures on their own. The gateway asks every --broker-api address
for its stats separately and labels every roomcast_broker_* line with
broker="<index of the address in the list>" (as roomcast_gateway_api_connected).
Each label set matches what `roomcast stats --broker-api` says of that
broker; a broker killed keeps its last lines, their age growing, while the
other's stay fresh and follow the stream. Exits 77 (skipped) when
nats-server is not installed.
"""

import json
import subprocess

import nats_util
from nats_util import harness, scaled

nats_util.require_nats_server()

STATS_MS = "100"


def per_broker(m):
    """
    {index: {sample: value}} of the roomcast_broker_* samples of /metrics, the
    sample named without its broker label (name, or name{other labels}). A
    roomcast_broker_* sample without a broker label first fails.
    """
    out = {}
    for k, v in m.items():
        if not k.startswith("roomcast_broker_"):
            continue
        name, brace, labels = k.partition("{")
        first, _, rest = labels[:-1].partition(",")
        key, _, val = first.partition("=")
        if not brace or key != "broker":
            raise AssertionError("a roomcast_broker_* sample without a broker label first: %s" % k)
        out.setdefault(int(json.loads(val)), {})[name + ("{%s}" % rest if rest else "")] = v
    return out


def info_of(figs):
    """The labels of a broker's one roomcast_broker_store_info sample."""
    keys = [k for k in figs if k.startswith("roomcast_broker_store_info{")]
    if len(keys) != 1:
        raise AssertionError("expected one roomcast_broker_store_info sample, got %r" % keys)
    return {k: json.loads(v) for k, v in (p.split("=", 1) for p in keys[0][len("roomcast_broker_store_info{"):-1]
                                          .split(","))}


def ev(i):
    return {"type": "m", "room_id": "room-%d" % (i % 3), "i": i, "pad": "p" * 50}


class NatsBrokerMetricsTest(nats_util.NatsTest):
    def start_broker(self, url):
        return self.cluster.start_broker("--store", "nats", "--nats-url", url, "--nats-timeout-ms", "2000")

    def stats_of(self, b):
        r = subprocess.run([harness.CLI_BIN, "stats", "--broker-api", b.api], capture_output=True, text=True,
                           timeout=scaled(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def wait_metrics(self, port, pred, what):
        return harness.wait_until(lambda: (lambda m: m if pred(m) else None)(per_broker(harness.get_metrics(port))),
                                  scaled(15), what)

    def assert_matches(self, figs, st):
        """A broker's label set shows what its own stats answer says."""
        self.assertEqual(info_of(figs), {"store": "nats", "replicas": "1", "epoch": st["epoch"]})
        self.assertEqual(figs["roomcast_broker_last_gseq"], st["gseq"])
        self.assertEqual(figs["roomcast_broker_history_events"], st["history"]["events"])
        self.assertEqual(figs["roomcast_broker_history_bytes"], st["history"]["bytes"])
        self.assertEqual(figs["roomcast_broker_nats_followed_gseq"], st["nats"]["follow_seq"])
        self.assertEqual(figs["roomcast_broker_nats_connected"], 1 if st["nats"]["connected"] else 0)
        self.assertEqual(figs["roomcast_broker_nats_fence_retries_total"], st["nats"]["fence_retries"])
        self.assertEqual(figs["roomcast_broker_nats_disconnects_total"], st["nats"]["disconnects"])

    def test_each_broker_on_its_own_label(self):
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        b = [self.start_broker(n.url), self.start_broker(n.url)]
        gw = c.start_gateway("--broker-stats-ms", STATS_MS, bus="%s,%s" % (b[0].bus, b[1].bus),
                             api="%s,%s" % (b[0].api, b[1].api))
        ids = []
        for k in range(4):
            ids += harness.publish(gw.port, [ev(k * 3 + i) for i in range(3)])
        last = harness.gseq(ids[-1])
        self.assertEqual(last, 12)

        # both brokers followed the stream to the last event: two label sets, each its broker's own answer
        both = self.wait_metrics(gw.port, lambda m: sorted(m) == [0, 1] and all(
            m[i].get("roomcast_broker_nats_followed_gseq") == last for i in (0, 1)), "both brokers at gseq 12")
        for i in (0, 1):
            self.assert_matches(both[i], self.stats_of(b[i]))
            self.assertLess(both[i]["roomcast_broker_stats_age_seconds"], scaled(2))

        # broker 1 dies: its lines stay, older and older; broker 0's stay fresh and go on with the stream
        b[1].proc.kill()
        more = harness.publish(gw.port, [ev(100 + i) for i in range(5)])
        self.assertEqual(harness.gseq(more[-1]), last + 5)
        m = self.wait_metrics(gw.port, lambda m: m[1]["roomcast_broker_stats_age_seconds"] > 1.0 and
                              m[0].get("roomcast_broker_last_gseq") == last + 5, "broker 1's figures aging")
        self.assertLess(m[0]["roomcast_broker_stats_age_seconds"], 1.0, "broker 0 still answers")
        self.assert_matches(m[0], self.stats_of(b[0]))
        self.assertEqual(m[1]["roomcast_broker_last_gseq"], last, "broker 1's last answer, before it died")
        self.assertEqual(m[1]["roomcast_broker_nats_followed_gseq"], last)
        later = self.wait_metrics(gw.port, lambda x: x[1]["roomcast_broker_stats_age_seconds"] >
                                  m[1]["roomcast_broker_stats_age_seconds"] + 0.5, "broker 1's age growing")
        self.assertLess(later[0]["roomcast_broker_stats_age_seconds"], 1.0)


if __name__ == "__main__":
    harness.main()
