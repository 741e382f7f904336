"""
Chaos case 4: 10 % packet loss between one gateway's host and the brokers'
for LOSSY seconds under load: the gateway's host drops 10 % of what the
brokers send it, and each broker's host drops 10 % of what that gateway
sends it (netbed set_loss with sources). The clients' link to the gateway
and everything else stays clean.

TCP retransmits what is lost, so the gateway's bus and api connections
stay up and nothing is lost; what a client sees is delay (and, when an api
answer takes more than half of --publish-timeout-ms, a call sent again to
the other broker). Deliveries and publish answers: chaos.py.

Skips (77) like the others.
"""

import sys
import time

import chaos
from chaos import Chaos, report

LOSSY = 10.0
PERCENT = 10


class GatewayLossTest(Chaos):
    def test_lossy_link_gateway_brokers(self):
        gw = self.gateways[0]

        def fault(c):
            gw.host.set_loss(PERCENT, sources=[b.host.addr for b in c.brokers])
            for b in c.brokers:
                b.host.set_loss(PERCENT, sources=[gw.addr])
            c.marks["lossy"] = time.monotonic()
            try:
                time.sleep(LOSSY)
            finally:
                gw.host.clear_loss()
                for b in c.brokers:
                    b.host.clear_loss()

        figures = self.run_case("gateway-loss", fault)
        m = gw.metrics()
        for i in range(len(self.brokers)):
            for name in ("roomcast_gateway_bus_connected", "roomcast_gateway_api_connected"):
                self.assertEqual(m.get('%s{broker="%d"}' % (name, i)), 1, "%s of broker %d after the loss" % (name, i))
        report("gateway-loss", loss_pct=PERCENT, lossy_s=LOSSY, gateway=gw.name,
               **dict(figures, **self.gateway_figures()))


if __name__ == "__main__":
    sys.exit(chaos.main())
