"""
History API: GET /api/v1/rooms/{room_id}/events?before=|after=&limit=&order=
pages through a room's retained events as {"events":[{"id","event"}],"next"};
newest first by default (oldest first with after= alone or order=asc); limit
1-500; bad parameters are 400 naming them; with --auth jwt a room the token
does not grant is 404, as is a path that names no room.
"""

import base64
import hashlib
import hmac
import json
import os
import time
import urllib.parse

from harness import GatewayTest, gseq, publish, request


class HistoryTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker("--history-events", "20000")
        self.gw = self.cluster.start_gateway()

    def page(self, room, **params):
        r = request(self.gw.port, "GET", "/api/v1/rooms/%s/events?%s" % (room, urllib.parse.urlencode(params)))
        self.assertEqual(r.status, 200, r)
        return r.json()

    def fill(self, n, batch=700):
        """n events in room r, with events of room s and global ones between; returns r's ids."""
        ids = []
        for start in range(0, n, batch):
            evs = []
            for i in range(start, min(n, start + batch)):
                evs.append({"type": "m", "room_id": "r", "i": i})
                if i % 7 == 0:
                    evs.append({"type": "other", "room_id": "s"})
                if i % 11 == 0:
                    evs.append({"type": "global"})
            got = publish(self.gw.port, evs)
            ids.extend(i for i, ev in zip(got, evs) if ev.get("room_id") == "r")
        return ids

    def test_paging_back_through_10000_events(self):
        ids = self.fill(10000)
        seen, cursor, pages = [], None, 0
        while True:
            params = {"limit": 500}
            if cursor:
                params["before"] = cursor
            p = self.page("r", **params)
            pages += 1
            self.assertLessEqual(len(p["events"]), 500)
            seen.extend(e["id"] for e in p["events"])
            for e in p["events"]:
                self.assertEqual(e["event"]["room_id"], "r")
            cursor = p["next"]
            if cursor is None:
                break
            self.assertEqual(cursor, p["events"][-1]["id"])
        self.assertEqual(seen, ids[::-1], "each exactly once, newest first")
        self.assertIn(pages, (20, 21))

    def test_paging_forward(self):
        ids = self.fill(1200)
        seen, cursor = [], ids[0]
        first = self.page("r", limit=1, order="asc")
        self.assertEqual([e["id"] for e in first["events"]], ids[:1])
        while cursor:
            p = self.page("r", after=cursor, limit=500)
            seen.extend(e["id"] for e in p["events"])
            cursor = p["next"]
        self.assertEqual(seen, ids[1:])

    def test_defaults_and_bounds(self):
        ids = self.fill(120)
        p = self.page("r")
        self.assertEqual([e["id"] for e in p["events"]], ids[::-1][:50])
        self.assertEqual(p["next"], ids[::-1][49])
        p = self.page("r", before=ids[10], after=ids[5], order="asc")
        self.assertEqual([e["id"] for e in p["events"]], ids[6:10])
        self.assertIsNone(p["next"])
        p = self.page("r", before=ids[0])
        self.assertEqual(p, {"events": [], "next": None})
        self.assertEqual(self.page("nosuchroom"), {"events": [], "next": None})

    def test_bad_parameters_are_400_naming_them(self):
        ids = self.fill(3)
        for q, name in [("before=x", "before"), ("after=", "after"), ("limit=0", "limit"), ("limit=501", "limit"),
                        ("limit=abc", "limit"), ("order=sideways", "order")]:
            with self.subTest(q=q):
                r = request(self.gw.port, "GET", "/api/v1/rooms/r/events?" + q)
                self.assertEqual(r.status, 400, r)
                err = r.json()["error"]
                self.assertEqual(err["code"], "invalid_parameter")
                self.assertTrue(err["message"].startswith(name), err)
        r = request(self.gw.port, "GET", "/api/v1/rooms/r/events?before=" + ids[0].split("-")[0] + "0-5")
        self.assertEqual(r.status, 410, r)

    def test_not_a_room_is_404(self):
        for path in ["/api/v1/rooms/a%20b/events", "/api/v1/rooms/a/b/events", "/api/v1/rooms/" + "x" * 129 + "/events"]:
            with self.subTest(path=path):
                r = request(self.gw.port, "GET", path)
                self.assertEqual(r.status, 404, r)
        r = request(self.gw.port, "POST", "/api/v1/rooms/r/events", body="{}")
        self.assertEqual(r.status, 405, r)

    def test_cli_history_prints_the_same(self):
        ids = self.fill(30)
        for args, params in [((), {}), (("--limit", "7"), {"limit": 7}),
                             (("--before", ids[20], "--limit", "5"), {"before": ids[20], "limit": 5}),
                             (("--after", ids[3]), {"after": ids[3]}),
                             (("--order", "asc", "--limit", "4"), {"order": "asc", "limit": 4})]:
            with self.subTest(args=args):
                r = self.cluster.cli("history", "--room", "r", *args)
                self.assertEqual(r.returncode, 0, r.stderr)
                self.assertEqual(json.loads(r.stdout), self.page("r", **params))
        for bad in [("--before", "x"), ("--limit", "501"), ("--order", "up"), ()]:
            with self.subTest(bad=bad):
                r = self.cluster.cli("history", *(("--room", "r") + bad if bad else ()))
                self.assertEqual(r.returncode, 2, r)


SECRET = "s" * 40


def token(read):
    def b64(d):
        return base64.urlsafe_b64encode(d).rstrip(b"=").decode()
    h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps({"sub": "u", "exp": int(time.time()) + 3600, "roomcast": {"read": list(read)}}).encode())
    sig = hmac.new(SECRET.encode(), ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, p, b64(sig))


class HistoryAuthTest(GatewayTest):
    def test_read_grant(self):
        secret = os.path.join(self.cluster.dir, "secret")
        with open(secret, "w") as f:
            f.write(SECRET + "\n")
        self.cluster.start_broker()
        open_gw = self.cluster.start_gateway()
        gw = self.cluster.start_gateway("--auth", "jwt", "--jwt-secret-file", secret)
        ids = publish(open_gw.port, [{"type": "m", "room_id": "lobby"}, {"type": "m", "room_id": "secret"}])
        tok = {"Authorization": "Bearer " + token(["lobby"])}
        r = request(gw.port, "GET", "/api/v1/rooms/lobby/events", headers=tok)
        self.assertEqual(r.status, 200, r)
        self.assertEqual([e["id"] for e in r.json()["events"]], ids[:1])
        self.assertEqual(request(gw.port, "GET", "/api/v1/rooms/lobby/events").status, 401)
        # a room not granted: 404, the same as a room that holds nothing or does not exist
        for room in ["secret", "nosuch"]:
            r = request(gw.port, "GET", "/api/v1/rooms/%s/events" % room, headers=tok)
            self.assertEqual(r.status, 404, r)
            self.assertEqual(r.json()["error"]["code"], "not_found")


if __name__ == "__main__":
    import unittest
    unittest.main()
