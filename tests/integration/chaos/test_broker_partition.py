"""
Chaos case 3: cut one broker's host off from every other (its cable pulled:
netbed's cut) for CUT seconds under load, then heal.

Nothing tells the gateways or NATS at once that the host is gone (no RST,
no FIN: TCP just stops). A gateway's api call that went to the cut broker
gets no answer; after half of --publish-timeout-ms, with the other broker
connected, it is sent again there with its keys
(roomcast_gateway_api_retries_total must move). Its bus goes quiet; the
other bus brings every event. After the heal the broker follows the stream
again (its gseq reaches the other's) and answers publishes again.

Topology and checks: chaos.py. Skips (77) like the others.
"""

import sys
import time

import chaos
from chaos import Chaos, harness, report, scaled

CUT = 10.0  # seconds the broker's host is cut off


class BrokerPartitionTest(Chaos):
    def test_cut_broker_host_then_heal(self):
        victim, other = self.brokers[0], self.brokers[1]
        before = victim.stats(self.client)

        def fault(c):
            victim.host.cut()
            c.marks["cut"] = time.monotonic()
            try:
                time.sleep(CUT)
            finally:
                victim.host.heal()
            c.marks["healed"] = time.monotonic()

        figures = self.run_case("broker-partition", fault)
        self.assertTrue(victim.proc.alive(), "the cut-off broker exited:\n%s" % victim.proc.log()[-3000:])
        t = time.monotonic()
        both = harness.wait_until(
            lambda: (lambda a, b: (a, b) if a and b and a["gseq"] == b["gseq"] else None)(
                victim.stats(self.client), other.stats(self.client)),
            scaled(40), "the healed broker1 to have followed the stream to broker2's gseq")
        caught_up = time.monotonic() - t
        st = both[0]
        retries = self.metric_delta("roomcast_gateway_api_retries_total")
        self.assertGreater(retries, 0, "no api call was sent again while broker1 was cut off")
        # it answers publishes again (counted since the heal: every POST after it went somewhere)
        self.assertGreater(st["publishes"], before["publishes"], "broker1 answered no publish: %r" % st)
        self.assertTrue(st["nats"]["connected"], st["nats"])
        report("broker-partition", cut_s=CUT, caught_up_s="%.1f" % caught_up,
               nats_disconnects=st["nats"]["disconnects"] - before["nats"]["disconnects"],
               **dict(figures, **self.gateway_figures()))


if __name__ == "__main__":
    sys.exit(chaos.main())
