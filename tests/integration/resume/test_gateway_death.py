"""
Gateway death: a client reads events 1..20 from gateway A; A is killed with
SIGKILL (no goodbye); 20 more events are published; the client reconnects to
gateway B with Last-Event-ID = the id of the 20th event it received and gets
exactly events 21..40, in order, then live events. Also: a fresh gateway
started after the death serves the same resume (nothing is kept in gateways).
"""

import json
import signal

from resume_util import cli_publish, harness, scaled

ROOM = "room-death"


def ev(i, room=ROOM):
    return {"type": "message.created", "room_id": room, "n": i, "text": "event %d" % i}


class GatewayDeathTest(harness.GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.a = self.cluster.start_gateway()
        self.b = self.cluster.start_gateway()

    def check_events(self, got, ids, first_n):
        self.assertEqual([e.id for e in got], ids)
        self.assertEqual([json.loads(e.data) for e in got], [ev(i) for i in range(first_n, first_n + len(ids))])

    def kill_a_and_resume(self, resume_gw):
        """resume_gw(): the gateway to come back to (called after the deaths and the publishing)."""
        a = self.a
        client = self.sse(a, "/api/v1/events?room_id=" + ROOM)
        # events 1..20 through A's own POST endpoint, with other rooms' traffic interleaved
        first = []
        for i in range(1, 21):
            first += harness.publish(a.port, [ev(i), {"type": "noise", "room_id": "other", "n": i}])[:1]
        got = client.events(20)
        self.check_events(got, first, 1)
        last_id = got[-1].id

        a.proc.signal(signal.SIGKILL)
        self.assertEqual(a.proc.wait(scaled(5)), -signal.SIGKILL)
        self.assertTrue(client.wait_eof(scaled(5)), "the client sees A's connection end")

        # 20 more while the client is away (through the broker api, with noise in between)
        more = []
        for i in range(21, 41):
            more += cli_publish(self.cluster, [{"type": "noise", "room_id": "other"}, ev(i)])[1:]

        gw = resume_gw()
        c2 = self.sse(gw, "/api/v1/events?room_id=" + ROOM,
                      headers={"Last-Event-ID": last_id})
        got2 = c2.events(20, timeout=scaled(10))
        self.check_events(got2, more, 21)

        # then live
        live = harness.publish(gw.port, [ev(41), {"type": "noise", "room_id": "other"}, ev(42)])
        got3 = c2.events(2, timeout=scaled(10))
        self.assertEqual([e.id for e in got3], [live[0], live[2]])
        self.assertEqual([json.loads(e.data) for e in got3], [ev(41), ev(42)])
        # nothing else: no duplicate, no reset
        rest = [x for x in c2.collect(0.3) if isinstance(x, harness.SSEEvent)]
        self.assertEqual(rest, [])

    def test_sigkill_gateway_resume_on_another(self):
        self.kill_a_and_resume(lambda: self.b)

    def test_sigkill_gateway_resume_on_a_new_gateway(self):
        # the gateway the client comes back to did not exist when the events were published
        self.kill_a_and_resume(lambda: self.cluster.start_gateway())


if __name__ == "__main__":
    harness.main()
