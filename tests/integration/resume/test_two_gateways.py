"""
Two gateways, eight concurrent publishers: each publisher is a thread with its
own keep-alive HTTP connection, to gateway A (even publishers) or B (odd),
POSTing small arrays. Every subscriber on either gateway sees the identical
sequence of ids and payloads: ids strictly increasing, every published id
exactly once with the payload that was posted under it, and each publisher's
events in the order it posted them. Room streams and firehose streams are
checked separately (the firehose also carries another room's events).
"""

import json
import threading

from resume_util import StreamTest, FastStream, KeepAlivePoster, gseq_of, harness, pump, scaled

ROOM = "room-two"
PUBLISHERS = 8
REQUESTS = 300   # per publisher
BATCH = 10       # events per request


class TwoGatewaysTest(StreamTest):
    def test_concurrent_posts_on_two_gateways_one_sequence(self):
        c = self.cluster
        c.start_broker()
        gws = [c.start_gateway(), c.start_gateway()]
        room_subs, fire_subs = [], []
        for g, gw in enumerate(gws):
            for k in range(3):
                room_subs.append(FastStream(gw.port, "/api/v1/events?room_id=" + ROOM, name="gw%d-room%d" % (g, k)))
            fire_subs.append(FastStream(gw.port, "/api/v1/events", name="gw%d-firehose" % g))
        self._fast = room_subs + fire_subs
        for s in self._fast:
            s.wait_open()

        results = [None] * PUBLISHERS
        errors = []

        def publisher(p):
            poster = KeepAlivePoster(gws[p % 2].port)
            out = []
            try:
                for r in range(REQUESTS):
                    evs = []
                    for b in range(BATCH):
                        j = r * BATCH + b
                        ev = {"type": "two", "room_id": ROOM, "pub": p, "j": j, "text": "p%d-%d" % (p, j)}
                        if j % 7 == 3:
                            ev = {"type": "other", "room_id": "room-other", "pub": p, "j": j}
                        evs.append(ev)
                    body = poster.post(evs)
                    out += list(zip(body["ids"], evs))
                results[p] = (out, poster.requests, len(poster.sock_ids))
            except Exception as e:
                errors.append("publisher %d: %r" % (p, e))
            finally:
                poster.close()

        threads = [threading.Thread(target=publisher, args=(p,), daemon=True) for p in range(PUBLISHERS)]
        for t in threads:
            t.start()
        total = PUBLISHERS * REQUESTS * BATCH

        def done():
            if errors:
                raise AssertionError("; ".join(errors))
            if any(t.is_alive() for t in threads):
                return False
            n_room = sum(1 for r in results for _, e in r[0] if e["room_id"] == ROOM)
            return all(s.count >= n_room for s in room_subs) and all(s.count >= total for s in fire_subs)

        try:
            pump(self._fast, done, scaled(40), "every event on every subscriber",
                 status=lambda: "counts %r" % [(s.name, s.count) for s in self._fast])
        finally:
            for t in threads:
                t.join(scaled(10))
        for s in self._fast:
            s.read_some(64)  # nothing more (no duplicates at the end)

        published = {}
        for p, (out, nreq, nconn) in enumerate(results):
            self.assertEqual(nreq, REQUESTS)
            self.assertEqual(nconn, 1, "publisher %d used one keep-alive connection" % p)
            for eid, ev in out:
                self.assertNotIn(eid, published, "an id given twice")
                published[eid] = ev
        self.assertEqual(len(published), total)
        want_fire = sorted(published, key=gseq_of)
        want_room = [i for i in want_fire if published[i]["room_id"] == ROOM]

        def check(s, want):
            ids = [e[0].decode() for e in s.events]
            self.assertEqual(len(ids), len(want), s.name)
            self.assertEqual(ids, want, "%s: every published id once, in id order" % s.name)
            payloads = [json.loads(e[1]) for e in s.events]
            self.assertEqual(payloads, [published[i] for i in want], "%s: the payload posted under each id" % s.name)
            return s.events

        ref_room = check(room_subs[0], want_room)
        for s in room_subs[1:]:
            self.assertEqual(check(s, want_room), ref_room, "%s: identical to %s" % (s.name, room_subs[0].name))
        ref_fire = check(fire_subs[0], want_fire)
        self.assertEqual(check(fire_subs[1], want_fire), ref_fire)
        # each publisher's events in its own posting order
        for p in range(PUBLISHERS):
            js = [published[i]["j"] for i in want_fire if published[i]["pub"] == p]
            self.assertEqual(js, sorted(js), "publisher %d's order" % p)
        for gw in gws:
            m = harness.get_metrics(gw.port)
            self.assertEqual(sum(v for k, v in m.items() if k.startswith("roomcast_stream_resets_total")), 0)

if __name__ == "__main__":
    harness.main()
