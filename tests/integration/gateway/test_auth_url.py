"""
--auth url: the gateway asks the application's URL before it opens a stream
(and, with --auth-publish, before a POST), the nchan / nginx auth_request way.

Each test starts a small HTTP server of its own (the standard library's, on
127.0.0.1 port 0) that plays the application: it decides by the session
cookie, records every request it gets, and can answer slowly, never, or with
a body that narrows the rooms. docs/PROTOCOL.md ("--auth url") is the
contract checked here.
"""

import http.server
import json
import threading
import time

import harness
from harness import GatewayTest, publish, request, scaled, wait_until

SERVICE = "servicetoken"


class App:
    """The application's auth endpoint: answers by the cookie `session=NAME`."""

    def __init__(self, delay=0.0):
        self.seen = []  # (method, path, {header: value}) of every request, in order
        self.lock = threading.Lock()
        self.delay = delay
        self.stop = threading.Event()
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                with app.lock:
                    app.seen.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                app.answer(self)

        self.server = http.server.ThreadingHTTPServer((harness.HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://%s:%d/auth/check?x=1" % (harness.HOST, self.port)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def requests(self):
        with self.lock:
            return list(self.seen)

    def answer(self, h):
        cookie = h.headers.get("Cookie", "")
        session = None
        for part in cookie.split(";"):
            k, _, v = part.strip().partition("=")
            if k == "session":
                session = v
        if self.delay:
            self.stop.wait(self.delay)
        if session == "hang":
            self.stop.wait(scaled(60))
            return
        if session == "cut":
            # closes in the middle of its answer
            h.wfile.write(b'HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{"read":')
            h.wfile.flush()
            h.close_connection = True
            return
        status, body, extra = {
            "alice": (200, b"", {}),
            "bob": (200, b'{"read":["lobby"]}', {}),
            "carol": (204, b"", {}),
            "dave": (200, b'{"read":["team-42:*"],"firehose":false,"sub":"dave"}', {}),
            "ops": (200, b'{"firehose":true}', {}),
            "writer": (200, b'{"read":["lobby"],"publish":["lobby"]}', {}),
            "mallory": (403, b"no", {}),
            "broken": (500, b"oops", {}),
            "redirect": (302, b"", {"Location": "/login"}),
            "garbage": (200, b'{"read":"lobby"', {}),
            "big": (200, b'{"read":["lobby"],"pad":"' + b"x" * 100000 + b'"}', {}),
        }.get(session, (401, b"login first", {"WWW-Authenticate": 'Cookie realm="app"'}))
        h.send_response(status)
        for k, v in extra.items():
            h.send_header(k, v)
        if status != 204:
            h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if status != 204:
            h.wfile.write(body)

    def close(self):
        self.stop.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(scaled(10))


def session(name):
    return {"Cookie": "theme=dark; session=%s" % name}


class AuthURLTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.apps = []
        self.cluster.start_broker("--history-events", "1000")

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for a in self.apps:
                a.close()

    def app(self, **kw):
        a = App(**kw)
        self.apps.append(a)
        return a

    def gateway(self, app, *extra, url=None):
        return self.cluster.start_gateway("--auth", "url", "--auth-url", url or app.url,
                                          "--publish-token", SERVICE, *extra)

    def status(self, gw, path, headers=None):
        """The status of a GET that may open a stream (reads the head only)."""
        c = harness.SSEClient(gw.port, path, headers=headers)
        try:
            return c.read_head()
        finally:
            c.close()

    def pub(self, gw, ev):
        return publish(gw.port, ev, headers={"Authorization": "Bearer " + SERVICE})

    def test_allow_by_cookie_and_what_the_app_receives(self):
        app = self.app()
        gw = self.gateway(app)
        c = self.sse(gw, "/api/v1/events?room_id=lobby,team-1", headers=dict(session("alice"),
                                                                             Authorization="Bearer abc"))
        eid = self.pub(gw, {"type": "t", "room_id": "lobby"})
        self.assertEqual(c.events(1)[0].id, eid)
        (method, path, h), = app.requests()
        self.assertEqual(method, "GET")
        self.assertEqual(path, "/auth/check?x=1")
        self.assertEqual(h.get("host"), "%s:%d" % (harness.HOST, app.port))
        self.assertEqual(h.get("cookie"), "theme=dark; session=alice")
        self.assertEqual(h.get("authorization"), "Bearer abc")
        self.assertEqual(h.get("x-original-method"), "GET")
        self.assertEqual(h.get("x-original-uri"), "/api/v1/events?room_id=lobby,team-1")
        self.assertEqual(h.get("x-roomcast-rooms"), "lobby,team-1")
        self.assertNotIn("x-roomcast-firehose", h)
        # a 204 allows too; the firehose is asked as such
        self.sse(gw, "/api/v1/events", headers=session("carol"))
        self.assertEqual(app.requests()[-1][2].get("x-roomcast-firehose"), "true")
        self.assertNotIn("x-roomcast-rooms", app.requests()[-1][2])

    def test_401_and_403_passed_on(self):
        app = self.app()
        gw = self.gateway(app)
        keep = self.sse(gw, "/api/v1/events?room_id=lobby", headers=session("alice"))
        r = request(gw.port, "GET", "/api/v1/events?room_id=lobby")
        self.assertJSONError(r, 401, "unauthorized")
        self.assertEqual(r.headers.get("www-authenticate"), 'Cookie realm="app"')
        r = request(gw.port, "GET", "/api/v1/events?room_id=lobby,secret", headers=session("mallory"))
        self.assertJSONError(r, 403, "forbidden", "'lobby,secret'")
        # a malformed query is answered without asking the application
        n = len(app.requests())
        r = request(gw.port, "GET", "/api/v1/events?room_id=bad%20room", headers=session("alice"))
        self.assertJSONError(r, 400, "invalid_room_id")
        self.assertEqual(len(app.requests()), n)
        # the history obeys it too: a refused room is not found
        r = request(gw.port, "GET", "/api/v1/rooms/lobby/events", headers=session("mallory"))
        self.assertJSONError(r, 404, "not_found")
        self.assertEqual(app.requests()[-1][2].get("x-roomcast-rooms"), "lobby")
        self.assertEqual(request(gw.port, "GET", "/api/v1/rooms/lobby/events", headers=session("alice")).status, 200)
        eid = self.pub(gw, {"type": "t", "room_id": "lobby"})
        self.assertEqual(keep.events(1)[0].id, eid)

    def test_body_narrows_the_rooms(self):
        app = self.app()
        gw = self.gateway(app)
        c = self.sse(gw, "/api/v1/events?room_id=lobby", headers=session("bob"))
        r = request(gw.port, "GET", "/api/v1/events?room_id=lobby,secret", headers=session("bob"))
        self.assertJSONError(r, 403, "forbidden", "'secret'")
        r = request(gw.port, "GET", "/api/v1/events", headers=session("bob"))
        self.assertJSONError(r, 403, "forbidden", "firehose")
        self.sse(gw, "/api/v1/events?room_id=team-42:a,team-42:b", headers=session("dave"))
        r = request(gw.port, "GET", "/api/v1/events?room_id=team-43:a", headers=session("dave"))
        self.assertJSONError(r, 403, "forbidden", "'team-43:a'")
        ops = self.sse(gw, "/api/v1/events", headers=session("ops"))
        eid = self.pub(gw, {"type": "t", "room_id": "lobby"})
        self.assertEqual(c.events(1)[0].id, eid)
        self.assertEqual(ops.events(1)[0].id, eid)
        r = request(gw.port, "GET", "/api/v1/rooms/secret/events", headers=session("bob"))
        self.assertJSONError(r, 404, "not_found")

    def test_other_answers_are_503(self):
        app = self.app()
        gw = self.gateway(app, "--auth-max-body-bytes", "4096")
        for who in ("broken", "redirect", "garbage", "big", "cut"):
            with self.subTest(who):
                r = request(gw.port, "GET", "/api/v1/events?room_id=lobby", headers=session(who))
                self.assertJSONError(r, 503, "auth_unavailable")
        self.assertEqual(self.status(gw, "/api/v1/events?room_id=lobby", headers=session("alice")), 200)

    def test_app_that_never_answers_is_503_after_the_timeout(self):
        app = self.app()
        gw = self.gateway(app, "--auth-timeout-ms", "400")
        t0 = time.monotonic()
        r = request(gw.port, "GET", "/api/v1/events?room_id=lobby", headers=session("hang"))
        took = time.monotonic() - t0
        self.assertJSONError(r, 503, "auth_unavailable", "did not answer")
        self.assertGreaterEqual(took, 0.35)
        self.assertLess(took, scaled(3))
        self.assertEqual(self.status(gw, "/api/v1/events?room_id=lobby", headers=session("alice")), 200)

    def test_unreachable_url_is_503(self):
        app = self.app()
        gw = self.gateway(app, url="http://%s:%d/auth" % (harness.HOST, harness.free_port()))
        r = request(gw.port, "GET", "/api/v1/events?room_id=lobby", headers=session("alice"))
        self.assertJSONError(r, 503, "auth_unavailable")
        self.assertTrue(gw.proc.alive())

    def test_bad_auth_url_refuses_to_start(self):
        for url in ("https://127.0.0.1/auth", "ftp://x/", "http://", "127.0.0.1:80/auth", "http://u:p@127.0.0.1/"):
            with self.subTest(url):
                p = harness.Proc("gw-bad-url", [harness.GATEWAY_BIN, "--listen", "127.0.0.1:0", "--auth", "url",
                                                "--auth-url", url], self.cluster.dir)
                self.assertEqual(p.wait(scaled(10)), 2, p.log())
                self.assertIn("--auth-url", p.log())
        p = harness.Proc("gw-no-url", [harness.GATEWAY_BIN, "--listen", "127.0.0.1:0", "--auth", "url"],
                         self.cluster.dir)
        self.assertEqual(p.wait(scaled(10)), 2, p.log())

    def test_cache(self):
        app = self.app()
        gw = self.gateway(app, "--auth-cache-ms", "60000")
        for _ in range(3):
            self.sse(gw, "/api/v1/events?room_id=lobby", headers=session("alice"))
        self.assertEqual(len(app.requests()), 1)
        # other rooms: asked again (the answer had no body: it was for those rooms)
        self.sse(gw, "/api/v1/events?room_id=other", headers=session("alice"))
        self.assertEqual(len(app.requests()), 2)
        # another credential: asked
        self.assertEqual(request(gw.port, "GET", "/api/v1/events?room_id=lobby", headers=session("mallory")).status,
                         403)
        self.assertEqual(request(gw.port, "GET", "/api/v1/events?room_id=lobby", headers=session("mallory")).status,
                         403)
        self.assertEqual(len(app.requests()), 3)
        # an answer that names the rooms is the credential's, whatever rooms come next
        self.sse(gw, "/api/v1/events?room_id=lobby", headers=session("bob"))
        r = request(gw.port, "GET", "/api/v1/events?room_id=secret", headers=session("bob"))
        self.assertJSONError(r, 403, "forbidden", "'secret'")
        self.assertEqual(len(app.requests()), 4)
        # failures are not cached
        for _ in range(2):
            self.assertEqual(request(gw.port, "GET", "/api/v1/events?room_id=a", headers=session("broken")).status,
                             503)
        self.assertEqual(len(app.requests()), 6)
        m = harness.get_metrics(gw.port)
        self.assertEqual(m.get("roomcast_auth_url_requests_total"), 6)
        self.assertEqual(m.get("roomcast_auth_url_cache_hits_total"), 4)
        self.assertEqual(m.get("roomcast_auth_url_unavailable_total"), 2)

    def test_cache_off_by_default_and_bounded(self):
        app = self.app()
        gw = self.gateway(app)
        for _ in range(2):
            self.sse(gw, "/api/v1/events?room_id=lobby", headers=session("alice"))
        self.assertEqual(len(app.requests()), 2)
        gw2 = self.gateway(app, "--auth-cache-ms", "60000", "--auth-cache-entries", "1")
        self.sse(gw2, "/api/v1/events?room_id=lobby", headers=session("alice"))
        self.sse(gw2, "/api/v1/events?room_id=lobby", headers=session("carol"))  # evicts alice
        self.sse(gw2, "/api/v1/events?room_id=lobby", headers=session("alice"))
        self.assertEqual(len(app.requests()), 5)

    def test_client_vanishes_while_the_app_thinks(self):
        app = self.app(delay=scaled(0.8))
        gw = self.gateway(app, "--auth-timeout-ms", str(int(scaled(5000))))
        clients = [harness.SSEClient(gw.port, "/api/v1/events?room_id=lobby", headers=session("alice"))
                   for _ in range(20)]
        wait_until(lambda: len(app.requests()) == 20, scaled(5), "the 20 checks to reach the app")
        for c in clients:
            c.close()
        # and some whose check never ends before the timeout
        gw2 = self.gateway(app, "--auth-timeout-ms", "300")
        hung = [harness.SSEClient(gw2.port, "/api/v1/events?room_id=lobby", headers=session("hang"))
                for _ in range(5)]
        wait_until(lambda: len(app.requests()) == 25, scaled(5), "the 5 checks to reach the app")
        for c in hung:
            c.close()
        time.sleep(scaled(1.2))  # the answers come to connections that are gone
        # a pipelined request behind a pending stream waits for it, then nothing more is read
        raw = harness.RawHTTP(gw.port)
        raw.send(harness.http_request_bytes("GET", "/api/v1/events?room_id=lobby", headers=session("alice")) +
                 harness.http_request_bytes("POST", "/api/v1/events", body=b'{"type":"x","room_id":"lobby"}',
                                            headers={"Authorization": "Bearer " + SERVICE,
                                                     "Content-Type": "application/json"}))
        raw.sock.close()
        c = self.sse(gw, "/api/v1/events?room_id=lobby", headers=session("alice"))
        eid = self.pub(gw, {"type": "t", "room_id": "lobby"})
        self.assertEqual(c.events(1)[0].id, eid)
        for g in (gw, gw2):
            self.assertTrue(g.proc.alive())
        # teardown: both exit 0 (a leak or a use after free fails the sanitizer build)

    def test_stop_with_checks_in_flight(self):
        app = self.app()
        gw = self.gateway(app, "--auth-timeout-ms", str(int(scaled(10000))))
        hung = [harness.SSEClient(gw.port, "/api/v1/events?room_id=lobby", headers=session("hang"))
                for _ in range(3)]
        wait_until(lambda: len(app.requests()) == 3, scaled(5), "the checks to reach the app")
        gw.proc.signal(15)
        self.assertExitsOnSignal(gw.proc, scaled(5))
        for c in hung:
            c.close()

    def test_post_with_auth_publish(self):
        app = self.app()
        gw = self.gateway(app, "--auth-publish")
        c = self.sse(gw, "/api/v1/events?room_id=lobby", headers=session("alice"))
        ev = {"type": "t", "room_id": "lobby"}
        # allowed without a body: any room
        r = harness.post_json(gw.port, ev, headers=session("alice"))
        self.assertEqual(r.status, 201, r)
        self.assertEqual(c.events(1)[0].id, r.json()["id"])
        h = app.requests()[-1][2]
        self.assertEqual(h.get("x-original-method"), "POST")
        self.assertEqual(h.get("x-original-uri"), "/api/v1/events")
        # a body's publish list narrows
        self.assertEqual(harness.post_json(gw.port, ev, headers=session("writer")).status, 201)
        r = harness.post_json(gw.port, [ev, {"type": "t", "room_id": "x"}], headers=session("writer"))
        self.assertJSONError(r, 403, "forbidden", "'x'")
        r = harness.post_json(gw.port, {"type": "t"}, headers=session("writer"))
        self.assertJSONError(r, 403, "forbidden", "$global")
        # refusals passed on; the service token still publishes without asking
        self.assertJSONError(harness.post_json(gw.port, ev), 401, "unauthorized")
        self.assertJSONError(harness.post_json(gw.port, ev, headers=session("mallory")), 403, "forbidden")
        self.assertJSONError(harness.post_json(gw.port, ev, headers=session("broken")), 503, "auth_unavailable")
        n = len(app.requests())
        self.pub(gw, ev)
        self.assertEqual(len(app.requests()), n)
        # pipelined POSTs keep their order and their answers' order
        raw = harness.RawHTTP(gw.port)
        evs = [{"type": "t", "room_id": "lobby", "n": i} for i in range(4)]
        raw.send(b"".join(harness.http_request_bytes("POST", "/api/v1/events", body=json.dumps(e).encode(),
                                                     headers=dict(session("alice"),
                                                                  **{"Content-Type": "application/json"}))
                          for e in evs))
        ids = [raw.read_response().json()["id"] for _ in evs]
        raw.close()
        got = c.events(2 + 4)[2:]
        self.assertEqual([e.id for e in got], ids)
        self.assertEqual([json.loads(e.data)["n"] for e in got], [0, 1, 2, 3])

    def test_post_without_auth_publish_keeps_the_publish_token(self):
        app = self.app()
        gw = self.gateway(app)
        ev = {"type": "t", "room_id": "lobby"}
        self.assertJSONError(harness.post_json(gw.port, ev, headers=session("alice")), 401, "unauthorized")
        self.pub(gw, ev)
        self.assertEqual(app.requests(), [])

    def test_revoke_by_sub_from_the_body(self):
        app = self.app()
        gw = self.gateway(app)
        d = self.sse(gw, "/api/v1/events?room_id=team-42:a", headers=session("dave"))
        a = self.sse(gw, "/api/v1/events?room_id=lobby", headers=session("alice"))
        r = self.cluster.cli("revoke", "--sub", "dave")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(d.wait_eof(scaled(3)), "dave's stream was not closed")
        self.assertIn("event: stream.revoked", bytes(d.body_raw).decode())
        # the app still says yes, but the gateway remembers the revocation
        r = request(gw.port, "GET", "/api/v1/events?room_id=team-42:a", headers=session("dave"))
        self.assertJSONError(r, 401, "unauthorized")
        self.assertFalse(a.eof)


if __name__ == "__main__":
    harness.main()
