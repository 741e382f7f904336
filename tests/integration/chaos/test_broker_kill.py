"""
Chaos case 1: SIGKILL one broker under load, restart it DOWN seconds later.

The gateways go on with the other broker: POSTs in flight to the dead one
are sent again to the other with their keys, its bus's events come from
the other bus. After the restart the broker follows the stream again and
the gateways use it again: both show its bus and api connected, and it
answers publishes (its own `stats`: publishes > 0, its counters start at 0
with the process) and has followed the stream to the same gseq as the
other. Deliveries and publish answers are checked by chaos.Chaos.run_case;
the gateways' /metrics must have shown the broker's bus and api going down
and up again.

Topology and checks: chaos.py. Skips (77) when not root, without ip netns,
nft/iptables or nats-server, or a broker without --store nats.
"""

import sys
import time

import chaos
from chaos import Chaos, harness, report, scaled

DOWN = 6.0  # seconds the broker stays dead


class BrokerKillTest(Chaos):
    def test_sigkill_broker_and_restart(self):
        victim = self.brokers[0]
        bus0, api0 = 'roomcast_gateway_bus_connected{broker="0"}', 'roomcast_gateway_api_connected{broker="0"}'

        def fault(c):
            victim.proc.kill()  # SIGKILL, reaped
            c.marks["killed"] = time.monotonic()
            time.sleep(DOWN)
            victim.start()
            c.marks["restarted"] = time.monotonic()
            for g in c.gateways:
                harness.wait_until(lambda: all(g.metrics().get(m) == 1 for m in (bus0, api0)), scaled(15),
                                   "%s to have broker1's bus and api connected again" % g.name)
            c.marks["rejoined"] = time.monotonic()

        figures = self.run_case("broker-kill", fault)
        killed, restarted = self.marks["killed"], self.marks["restarted"]
        for i, g in enumerate(self.gateways):
            for m in (bus0, api0):
                self.assertTrue(any(v == 0 for _, v in self.series(i, m, killed, restarted)),
                                "%s /metrics never showed %s 0 while broker1 was dead" % (g.name, m))
                self.assertEqual(self.series(i, m)[-1][1], 1, "%s %s at the end" % (g.name, m))
        # it follows the stream again, and the gateways send it publishes again
        other = self.brokers[1]
        both = harness.wait_until(
            lambda: (lambda a, b: (a, b) if a and b and a["gseq"] == b["gseq"] else None)(
                victim.stats(self.client), other.stats(self.client)),
            scaled(15), "the restarted broker1 to have followed the stream to broker2's gseq")
        st = both[0]
        self.assertGreater(st["publishes"], 0, "no gateway sent the restarted broker1 a publish: %r" % st)
        self.assertEqual(st["nats"]["connected"], True, st["nats"])
        report("broker-kill", down_s=DOWN, rejoined_s="%.1f" % (self.marks["rejoined"] - restarted),
               publishes_after_restart=st["publishes"], gseq=st["gseq"], **dict(figures, **self.gateway_figures()))


if __name__ == "__main__":
    sys.exit(chaos.main())
