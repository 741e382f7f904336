"""
The broker's limits as an HTTP publisher sees them through the gateway: a
POST that would add a room beyond the broker's --max-rooms gets 503
too_many_rooms (the broker's state, not the request's fault) and nothing of
it is published; POSTs into the rooms the broker has go on, also when they
travel to the broker in the same request as the refused one.
"""

import harness
from harness import GatewayTest, RawHTTP, http_request_bytes, post_json


class TooManyRoomsTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker("--max-rooms", "2")
        self.gw = self.cluster.start_gateway()

    def test_room_beyond_max_rooms_is_503(self):
        c = self.sse(self.gw, "/api/v1/events")
        for room in ("a", "b"):
            self.assertEqual(post_json(self.gw.port, {"type": "t", "room_id": room}).status, 201)
        self.assertJSONError(post_json(self.gw.port, {"type": "t", "room_id": "c"}), 503, code="too_many_rooms",
                             message_has="events")
        # an array that holds one new room is refused whole
        self.assertJSONError(post_json(self.gw.port, [{"type": "t", "room_id": "a"}, {"type": "t", "room_id": "c"}]),
                             503, code="too_many_rooms")
        marker = harness.publish(self.gw.port, {"type": "marker", "room_id": "a"})
        got = [e.data for e in c.events_until(marker)]
        self.assertEqual(len(got), 3, got)
        self.assertNotIn('"c"', "".join(got))

    def test_pipelined_posts_around_a_refused_one(self):
        # queued together, they may reach the broker in one request: only the new room's POST fails
        raw = RawHTTP(self.gw.port)
        try:
            raw.send(b"".join(http_request_bytes("POST", "/api/v1/events", b'{"type":"t","room_id":"%s"}' % r,
                                                 {"Content-Type": "application/json"})
                              for r in (b"a", b"b", b"new")))
            statuses = [raw.read_response().status for _ in range(3)]
        finally:
            raw.close()
        self.assertEqual(statuses, [201, 201, 503])


if __name__ == "__main__":
    harness.main()
