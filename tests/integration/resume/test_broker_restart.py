"""
Broker restart: the broker keeps its history in memory, so a restarted broker
has a new epoch. Streams that were open across the restart get
`stream.reset` with reason `epoch_changed` (id `<new epoch>-0`: nothing of
the new epoch was missed), then every event published after the restart, in
order, exactly once — including those published before the gateway's bus
reconnected (the gateway repairs them from the new broker's history). The
gateways reconnect by themselves; the new broker listens on the same
addresses.
"""

import json

from resume_util import cli_publish, epoch_of, gseq_of, harness, scaled

ROOM = "room-r"


def ev(i, room=ROOM):
    return {"type": "r", "room_id": room, "i": i}


class BrokerRestartTest(harness.GatewayTest):
    def restart_broker(self):
        c = self.cluster
        old = c.broker
        self.assertEqual(old.proc.stop(), 0, "the broker exits 0 on SIGTERM")
        return c.start_broker(bus=old.bus, api=old.api)

    def test_streams_reset_epoch_changed_then_new_events(self):
        c = self.cluster
        c.start_broker()
        gws = [c.start_gateway(), c.start_gateway()]
        streams = []
        for gw in gws:
            streams.append(("room", self.sse(gw, "/api/v1/events?room_id=" + ROOM)))
            streams.append(("firehose", self.sse(gw, "/api/v1/events")))
        before = harness.publish(gws[0].port, [ev(i) for i in range(5)])
        for kind, s in streams:
            self.assertEqual([e.id for e in s.events(5)], before)
        old_epoch = epoch_of(before[0])

        self.restart_broker()
        # publish at once through the new broker's api: the gateways may not be subscribed yet
        after = cli_publish(c, [ev(i) for i in range(100, 110)] + [{"type": "global-after"}])
        new_epoch = epoch_of(after[0])
        self.assertNotEqual(new_epoch, old_epoch, "a restarted broker has a new epoch")
        self.assertEqual([gseq_of(i) for i in after], list(range(1, 12)))

        for kind, s in streams:
            got = s.events(12, timeout=scaled(15))
            reset = got[0]
            self.assertEqual(json.loads(reset.data), {"type": "stream.reset", "reason": "epoch_changed"}, kind)
            self.assertEqual(reset.id, "%s-0" % new_epoch, kind)
            self.assertEqual([e.id for e in got[1:]], after, kind)
            self.assertEqual([json.loads(e.data) for e in got[1:]],
                             [ev(i) for i in range(100, 110)] + [{"type": "global-after"}], kind)

        # the gateways are ready again and publish to the new broker; live events go on
        for gw in gws:
            harness.wait_http(gw, "/readyz")
        live = harness.publish(gws[1].port, [ev(200), {"type": "x", "room_id": "other"}])
        for kind, s in streams:
            want = [live[0]] if kind == "room" else live
            self.assertEqual([e.id for e in s.events(len(want), timeout=scaled(10))], want, kind)
            self.assertEqual([e for e in s.collect(0.2) if isinstance(e, harness.SSEEvent)], [], kind)
        for gw in gws:
            m = harness.get_metrics(gw.port)
            self.assertEqual(m['roomcast_stream_resets_total{reason="epoch_changed"}'], 2)
            self.assertEqual(m['roomcast_stream_resets_total{reason="gap_unrecoverable"}'], 0)

    def test_resume_with_an_old_epoch_id_after_the_restart(self):
        c = self.cluster
        c.start_broker()
        gw = c.start_gateway()
        s = self.sse(gw, "/api/v1/events?room_id=" + ROOM)
        watch = self.sse(gw, "/api/v1/events")
        before = harness.publish(gw.port, [ev(i) for i in range(3)])
        self.assertEqual([e.id for e in s.events(3)], before)
        s.close()

        self.restart_broker()
        after = cli_publish(c, [ev(i) for i in range(10, 13)])
        # the gateway has moved to the new epoch and seen its events
        watch.events_until(after[-1], timeout=scaled(10))
        # a client that was away comes back with an id of the old epoch
        s2 = self.sse(gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": before[-1]})
        [reset] = s2.events(1, timeout=scaled(10))
        self.assertEqual(json.loads(reset.data), {"type": "stream.reset", "reason": "epoch_changed"})
        self.assertEqual(reset.id, after[-1], "the reset carries the current last id")
        harness.wait_http(gw, "/readyz")  # the api connection is back too
        live = harness.publish(gw.port, ev(20))
        self.assertEqual([e.id for e in s2.events(1, timeout=scaled(10))], [live])


if __name__ == "__main__":
    harness.main()
