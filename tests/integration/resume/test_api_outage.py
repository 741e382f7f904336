"""
A resume while the gateway's connection to the broker api is down (a network
cut between them, the broker and its history untouched): the replay waits for
the api, up to --publish-timeout-ms, like the bus repair does, then the
stream gets the events after its Last-Event-ID and goes live, without a
stream.reset. Only when the api stays away longer than that is the stream
reset (history_unavailable), and it goes on live.

The gateway reaches the broker api through a TCP proxy (resume_util's
HoldingProxy) that the test cuts: its connection drops and its redials are
refused while the bus connection, which does not go through the proxy,
stays up.
"""

import json
import time

from resume_util import HoldingProxy, cli_publish, harness, scaled

ROOM = "outage"


def ev(i):
    return {"type": "o", "room_id": ROOM, "i": i}


class ApiOutageTest(harness.GatewayTest):
    def start(self, timeout_ms):
        c = self.cluster
        c.start_broker("--history-events", "100")
        self.proxy = HoldingProxy(int(c.broker.api.rsplit(":", 1)[1]))
        self.proxy.release()
        self.addCleanup(self.proxy.close)
        self.gw = c.start_gateway("--publish-timeout-ms", str(timeout_ms), api=self.proxy.url())
        # a firehose that sees everything: the gateway has the last id before a test resumes
        self.watch = self.sse(self.gw, "/api/v1/events")

    def publish(self, events):
        ids = cli_publish(self.cluster, events)
        self.watch.events_until(ids[-1])
        return ids

    def readyz(self):
        return harness.request(self.gw.port, "GET", "/readyz", timeout=scaled(2)).json()

    def cut_api(self):
        """Cuts the proxy; returns once the gateway sees its api down (bus still up)."""
        self.proxy.cut()
        harness.wait_until(lambda: not self.readyz()["broker_api"], scaled(10), "/readyz to say broker_api false")
        self.assertTrue(self.readyz()["broker_bus"])

    def test_resume_during_the_outage_replays_once_the_api_is_back(self):
        self.start(int(scaled(10) * 1000))
        before = self.publish([ev(i) for i in range(5)])
        self.cut_api()
        during = self.publish([ev(i) for i in range(5, 8)])  # the bus carries them, not the api
        c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": before[1]})
        # the resume is asked while the api is away: let the gateway fail one more redial, then restore it
        refused = self.proxy.refused
        harness.wait_until(lambda: self.proxy.refused > refused, scaled(10), "a refused api redial")
        self.proxy.restore()
        want = before[2:] + during
        got = []
        while len(got) < len(want):
            [e] = c.events(1, timeout=scaled(15))
            if json.loads(e.data).get("type") == "stream.reset":
                self.fail("a resume the history covers was reset while the api reconnected: %s %s" % (e.id, e.data))
            got.append(e)
        self.assertEqual([e.id for e in got], want)
        self.assertEqual([json.loads(e.data)["i"] for e in got], list(range(2, 8)))
        live = self.publish([ev(8)])
        self.assertEqual([e.id for e in c.events(1)], live)
        harness.wait_until(lambda: self.readyz()["broker_api"], scaled(10), "/readyz to say broker_api true")

    def test_resume_resets_when_the_api_stays_away_past_the_timeout(self):
        self.start(300)
        before = self.publish([ev(i) for i in range(3)])
        self.cut_api()
        t0 = time.monotonic()
        c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": before[0]})
        [reset] = c.events(1, timeout=scaled(10))
        waited = time.monotonic() - t0
        self.assertEqual(json.loads(reset.data), {"type": "stream.reset", "reason": "history_unavailable"})
        self.assertEqual(reset.id, before[-1])
        # the gateway waited for the api (--publish-timeout-ms 300) before it gave up
        self.assertGreaterEqual(waited, 0.25, "reset after %.3fs, before the api timeout" % waited)
        # and the stream goes on live
        live = self.publish([ev(3)])
        self.assertEqual([e.id for e in c.events(1)], live)


if __name__ == "__main__":
    harness.main()
