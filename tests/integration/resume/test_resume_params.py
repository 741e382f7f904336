"""
How a stream is told where to resume, and what it says when it cannot:

- the `last_event_id` query parameter works like the `Last-Event-ID` header,
  and the header wins when both are given (either way round: a bad header
  with a good query parameter is a reset, a good header with a bad query
  parameter is a clean resume);
- an id of another epoch: `stream.reset` with reason `epoch_changed`;
- an id older than the broker's history (`--history-events 10`, 100 events
  published, resume from the first): `history_unavailable`;
- a malformed id: `history_unavailable`.

A reset is the first message after the preamble, byte for byte
`id: <the current last id>\\ndata: {"type":"stream.reset","reason":…}\\n\\n`,
and live events follow it.
"""

import json
import time

from resume_util import PREAMBLE, HoldingProxy, cli_publish, epoch_of, harness, scaled

ROOM = "room-p"


def ev(i, room=ROOM):
    return {"type": "p", "room_id": room, "i": i}


class ResumeParamsTest(harness.GatewayTest):
    HISTORY = 10

    def setUp(self):
        super().setUp()
        self.cluster.start_broker("--history-events", str(self.HISTORY))
        self.gw = self.cluster.start_gateway()
        # a firehose that sees everything: the gateway has seen the last id before a test resumes
        self.watch = self.sse(self.gw, "/api/v1/events")

    def publish(self, events):
        ids = harness.publish(self.gw.port, events)
        self.watch.events_until(ids[-1])
        return ids

    def expect_replay_then_live(self, c, want_ids, want_events):
        got = c.events(len(want_ids))
        self.assertEqual([e.id for e in got], want_ids)
        self.assertEqual([json.loads(e.data) for e in got], want_events)
        live = self.publish([ev(100), {"type": "other", "room_id": "elsewhere"}, {"type": "global"}])
        got = c.events(2)
        self.assertEqual([e.id for e in got], [live[0], live[2]])
        self.assertEqual([e for e in c.collect(0.2) if isinstance(e, harness.SSEEvent)], [])

    def expect_reset(self, c, reason, current_id):
        """The first message after the preamble is the reset, then live events."""
        raw = c.read_body_bytes(len(PREAMBLE) + 1)
        [first] = c.events(1)
        want = ("id: %s\ndata: {\"type\":\"stream.reset\",\"reason\":\"%s\"}\n\n" % (current_id, reason)).encode()
        self.assertEqual(bytes(c.body_raw[:len(PREAMBLE) + len(want)]), PREAMBLE + want, raw)
        self.assertEqual(first.id, current_id)
        self.assertEqual(json.loads(first.data), {"type": "stream.reset", "reason": reason})
        live = self.publish([{"type": "other", "room_id": "elsewhere"}, ev(200)])
        [nxt] = c.events(1)
        self.assertEqual(nxt.id, live[1], "live events follow the reset")
        self.assertEqual(json.loads(nxt.data), ev(200))
        return live[1]

    # -- the query parameter and the header --

    def test_query_parameter_resumes(self):
        ids = self.publish([ev(i) for i in range(8)])
        c = self.sse(self.gw, "/api/v1/events?room_id=%s&last_event_id=%s" % (ROOM, ids[2]))
        self.expect_replay_then_live(c, ids[3:], [ev(i) for i in range(3, 8)])

    def test_header_resumes(self):
        ids = self.publish([ev(i) for i in range(8)])
        c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": ids[2]})
        self.expect_replay_then_live(c, ids[3:], [ev(i) for i in range(3, 8)])

    def test_query_parameter_first_then_room(self):
        # the parameter's position in the query string does not matter
        ids = self.publish([ev(i) for i in range(5)])
        c = self.sse(self.gw, "/api/v1/events?last_event_id=%s&room_id=%s" % (ids[0], ROOM))
        self.expect_replay_then_live(c, ids[1:], [ev(i) for i in range(1, 5)])

    def test_header_wins_over_query(self):
        ids = self.publish([ev(i) for i in range(8)])
        c = self.sse(self.gw, "/api/v1/events?room_id=%s&last_event_id=%s" % (ROOM, ids[0]),
                     headers={"Last-Event-ID": ids[5]})
        self.expect_replay_then_live(c, ids[6:], [ev(6), ev(7)])

    def test_good_header_wins_over_malformed_query(self):
        ids = self.publish([ev(i) for i in range(4)])
        c = self.sse(self.gw, "/api/v1/events?room_id=%s&last_event_id=garbage" % ROOM,
                     headers={"Last-Event-ID": ids[1]})
        self.expect_replay_then_live(c, ids[2:], [ev(2), ev(3)])

    def test_malformed_header_wins_over_good_query(self):
        ids = self.publish([ev(i) for i in range(4)])
        c = self.sse(self.gw, "/api/v1/events?room_id=%s&last_event_id=%s" % (ROOM, ids[1]),
                     headers={"Last-Event-ID": "garbage"})
        self.expect_reset(c, "history_unavailable", ids[-1])

    # -- resets --

    def test_foreign_epoch_is_epoch_changed(self):
        ids = self.publish([ev(i) for i in range(5)])
        epoch = epoch_of(ids[0])
        other = "%x" % ((int(epoch, 16) ^ 0x00ff00ff) or 1)
        current = ids[-1]
        for how in ("header", "query"):
            with self.subTest(how=how):
                foreign = "%s-%d" % (other, 2)
                if how == "header":
                    c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": foreign})
                else:
                    c = self.sse(self.gw, "/api/v1/events?room_id=%s&last_event_id=%s" % (ROOM, foreign))
                current = self.expect_reset(c, "epoch_changed", current)
                c.close()

    def test_id_older_than_the_history_is_history_unavailable(self):
        ids = []
        for k in range(10):
            ids += self.publish([ev(i) for i in range(10 * k, 10 * k + 10)])
        self.assertEqual(len(ids), 100)
        # the broker keeps 10: resuming after the first of 100 cannot be done
        c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": ids[0]})
        current = self.expect_reset(c, "history_unavailable", ids[-1])
        # the query parameter says the same
        c2 = self.sse(self.gw, "/api/v1/events?room_id=%s&last_event_id=%s" % (ROOM, ids[0]))
        self.expect_reset(c2, "history_unavailable", current)
        m = harness.get_metrics(self.gw.port)
        self.assertEqual(m['roomcast_stream_resets_total{reason="history_unavailable"}'], 2)

    def test_resume_at_the_edge_of_the_history(self):
        ids = []
        for k in range(3):
            ids += self.publish([ev(i) for i in range(10 * k, 10 * k + 10)])
        # history: the last 10 events; after ids[-11] exactly those 10 follow
        c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": ids[-11]})
        self.expect_replay_then_live(c, ids[-10:], [ev(i) for i in range(20, 30)])

    def test_malformed_id_is_history_unavailable(self):
        ids = self.publish([ev(i) for i in range(3)])
        epoch = epoch_of(ids[0])
        current = ids[-1]
        bad = ["garbage", "12345", "%s-" % epoch, "-3", "%s-x" % epoch, "%s-1-2" % epoch, "zz-1",
               "%s-%s" % (epoch, "9" * 30), "%s--1" % epoch, "%s- 1" % epoch]
        for i, v in enumerate(bad):
            with self.subTest(value=v):
                if i % 2:
                    c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": v})
                else:
                    from urllib.parse import quote
                    c = self.sse(self.gw, "/api/v1/events?room_id=%s&last_event_id=%s" % (ROOM, quote(v)))
                current = self.expect_reset(c, "history_unavailable", current)
                c.close()

    def test_id_beyond_the_last_id_is_history_unavailable(self):
        ids = self.publish([ev(i) for i in range(3)])
        c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM,
                     headers={"Last-Event-ID": "%s-%d" % (epoch_of(ids[0]), 10 ** 9)})
        self.expect_reset(c, "history_unavailable", ids[-1])


class FreshGatewayTest(harness.GatewayTest):
    """
    A gateway that has not received a bus frame yet (just started, its bus
    subscription not up) knows neither the current epoch nor the last id. A
    stream that asks to resume then must still (a) get a reset that carries
    `id: <current last id>`, and (b) not lose the events published between its
    replay and the moment the bus connects. The bus is reached through a proxy
    that holds the connection until release(), so the window is deterministic.
    """

    def setUp(self):
        super().setUp()
        self.proxy = None
        c = self.cluster
        c.start_broker("--history-events", "10", "--bus-tick-ms", "200")
        self.ids = cli_publish(c, [ev(i) for i in range(20)])
        self.proxy = HoldingProxy(int(c.broker.bus.rsplit(":", 1)[1]))
        self.gw = c.start_gateway(bus=self.proxy.url(), ready=False)
        self.assertEqual(harness.request(self.gw.port, "GET", "/readyz").status, 503, "the bus is held")

    def tearDown(self):
        if self.proxy is not None:
            self.proxy.close()
        super().tearDown()

    def release_bus(self):
        self.proxy.release()
        harness.wait_http(self.gw, "/readyz")

    def stream(self, last_id):
        c = self.sse(self.gw, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": last_id})
        # the stream is open (preamble read); whatever the gateway does before its bus is up, it does now
        time.sleep(0.3)
        return c

    def expect_reset_first(self, c, reason):
        self.release_bus()
        [first] = c.events(1, timeout=scaled(5))
        self.assertEqual(json.loads(first.data), {"type": "stream.reset", "reason": reason})
        want = PREAMBLE + ("id: %s\n" % self.ids[-1]).encode()
        self.assertEqual(bytes(c.body_raw[:len(want)]), want, "the reset carries the broker's current last id")
        # then live, and nothing lost after the reset's id
        live = cli_publish(self.cluster, [ev(300)])
        [nxt] = c.events(1, timeout=scaled(5))
        self.assertEqual(nxt.id, live[0])

    def test_malformed_id_before_the_first_frame(self):
        self.expect_reset_first(self.stream("garbage"), "history_unavailable")

    def test_foreign_epoch_before_the_first_frame(self):
        other = "%x" % ((int(epoch_of(self.ids[0]), 16) ^ 0x00ff00ff) or 1)
        self.expect_reset_first(self.stream(other + "-3"), "epoch_changed")

    def test_evicted_id_before_the_first_frame(self):
        self.expect_reset_first(self.stream(self.ids[0]), "history_unavailable")

    def test_resume_before_the_bus_connects_loses_nothing(self):
        c = self.stream(self.ids[14])
        # published while this gateway is not subscribed: it never sees them on its bus
        missed = cli_publish(self.cluster, [ev(i) for i in range(20, 23)])
        self.release_bus()
        live = cli_publish(self.cluster, [ev(23)])
        got = c.events(9, timeout=scaled(10))
        self.assertEqual([e.id for e in got], self.ids[15:] + missed + live)
        self.assertEqual([json.loads(e.data) for e in got], [ev(i) for i in range(15, 24)])


if __name__ == "__main__":
    harness.main()
