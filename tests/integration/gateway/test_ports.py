"""
Port 0: the broker (--bus, --api) and the gateway (--listen, also with
--workers) bind a port the system picks and log the address they bound in
their ready line, so a test or an operator reaches them there; nobody has to
pick a "free" port that someone else may take first. Checked from the
outside: the logged ports are not 0, and they are the ones that serve.
"""

import re
import time

import harness
from harness import GatewayTest, publish, request, scaled

BROKER_LINE = re.compile(r'msg="broker ready" .*\bbus=tcp://127\.0\.0\.1:(\d+) api=tcp://127\.0\.0\.1:(\d+) ')
GATEWAY_LINE = re.compile(r'msg="gateway ready" listen=127\.0\.0\.1:(\d+) worker=(\d+) ')


def listening_sockets(port):
    """Listening TCP sockets on 127.0.0.1:port, from /proc/net/tcp."""
    n = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            cols = line.split()
            if cols[3] == "0A" and cols[1] == "0100007F:%04X" % port:
                n += 1
    return n


def ready_lines(proc, pattern, n):
    """The first n matches of pattern in proc's log, polled for with a deadline."""
    def found():
        if not proc.alive():
            raise AssertionError("%s exited:\n%s" % (proc.name, proc.log()))
        m = pattern.findall(proc.log())
        return m if len(m) >= n else None
    return harness.wait_until(found, scaled(10), "%d ready line(s) of %s" % (n, proc.name))


class BoundPortTest(GatewayTest):
    def test_port_0_is_logged_as_the_bound_port(self):
        c = self.cluster
        # started by hand, not through the harness (which relies on the same lines)
        broker = c._start("broker", [harness.BROKER_BIN, "--bus", "tcp://127.0.0.1:0",
                                     "--api", "tcp://127.0.0.1:0"])
        (bus_port, api_port), = [tuple(map(int, m)) for m in ready_lines(broker, BROKER_LINE, 1)]
        self.assertNotEqual(bus_port, 0, broker.log())
        self.assertNotEqual(api_port, 0, broker.log())
        self.assertNotEqual(bus_port, api_port)
        self.assertEqual(listening_sockets(bus_port), 1)
        self.assertEqual(listening_sockets(api_port), 1)
        c.broker = harness.Broker(broker, "tcp://127.0.0.1:%d" % bus_port, "tcp://127.0.0.1:%d" % api_port)
        # the api answers on the logged address
        r = c.cli("stats")
        self.assertEqual(r.returncode, 0, r.stderr)

        gw = c._start("gateway", [harness.GATEWAY_BIN, "--listen", "127.0.0.1:0", "--workers", "3",
                                  "--broker-bus", c.broker.bus, "--broker-api", c.broker.api])
        lines = ready_lines(gw, GATEWAY_LINE, 3)
        ports = {int(port) for port, _ in lines}
        self.assertEqual(sorted(int(w) for _, w in lines), [0, 1, 2], gw.log())
        self.assertEqual(len(ports), 1, "every loop on the one port: %r" % lines)
        port = ports.pop()
        self.assertNotEqual(port, 0, gw.log())
        # all three loops listen on the logged port (SO_REUSEPORT)
        deadline = time.monotonic() + scaled(5)
        while listening_sockets(port) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        self.assertEqual(listening_sockets(port), 3)
        # the gateway serves there, connected to the broker's logged bus and api
        g = harness.Gateway(gw, port, c.broker.bus, c.broker.api)
        harness.wait_http(g, "/readyz")
        s = self.sse(g, "/api/v1/events?room_id=p")
        eid = publish(port, {"type": "t", "room_id": "p"})
        self.assertEqual(s.events(1)[0].id, eid)
        self.assertEqual(request(port, "GET", "/healthz").status, 200)

    def test_the_harness_starts_everything_on_port_0(self):
        b = self.cluster.start_broker()
        gw = self.cluster.start_gateway("--workers", "2")
        self.assertIn("--bus tcp://127.0.0.1:0 --api tcp://127.0.0.1:0", " ".join(b.proc.argv))
        self.assertIn("--listen 127.0.0.1:0", " ".join(gw.proc.argv))
        self.assertNotIn(":0 ", b.bus + " " + b.api + " ")
        self.assertEqual(listening_sockets(gw.port), 2)
        self.assertEqual(request(gw.port, "GET", "/readyz").status, 200)


if __name__ == "__main__":
    harness.main()
