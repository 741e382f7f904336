"""
--auth jwt: who may read a room, and who may publish (SPEC "Authorization").

Tokens are minted with `roomcast token` / `roomcast keygen` (the CLI binary)
and, for the malformed and hostile rows, signed here with the standard
library's hmac. Every refusal leaves the gateway up and other streams
unaffected (checked by a stream that stays open across each test).
"""

import base64
import hashlib
import hmac
import json
import os
import signal
import time

import harness
from harness import GatewayTest, publish, request, scaled, wait_until

SECRET = "s" * 40


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims, secret=SECRET, header=None):
    """A token signed here (for claims the CLI would not mint)."""
    h = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(claims).encode())
    sig = hmac.new(secret.encode(), ("%s.%s" % (h, p)).encode(), hashlib.sha256).digest()
    return "%s.%s.%s" % (h, p, b64(sig))


def claims(sub="alice", read=("lobby",), ttl=3600, **kw):
    c = {"sub": sub, "exp": int(time.time()) + ttl, "roomcast": {"read": list(read)}}
    c.update(kw)
    return c


def bearer(tok):
    return {"Authorization": "Bearer " + tok}


class AuthTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.secret = os.path.join(self.cluster.dir, "secret")
        with open(self.secret, "w") as f:
            f.write(SECRET + "\n")
        self.cluster.start_broker("--history-events", "1000")

    def gateway(self, *extra):
        return self.cluster.start_gateway("--auth", "jwt", "--jwt-secret-file", self.secret, *extra)

    def mint(self, *args, key=None):
        r = self.cluster.cli("token", *(["--key-file", key] if key else ["--secret-file", self.secret]), *args)
        self.assertEqual(r.returncode, 0, r.stderr)
        return r.stdout.strip()

    def get(self, gw, path, headers=None):
        return request(gw.port, "GET", path, headers=headers)

    def status(self, gw, path, headers=None):
        """The status of a GET that may open a stream (read the head only)."""
        c = harness.SSEClient(gw.port, path, headers=headers)
        try:
            return c.read_head()
        finally:
            c.close()

    def assert401(self, resp):
        self.assertJSONError(resp, 401, "unauthorized")
        self.assertTrue(resp.headers.get("www-authenticate", "").startswith("Bearer"), resp)

    def test_401_rows(self):
        gw = self.gateway("--jwt-leeway-s", "0", "--jwt-audience", "rc", "--jwt-issuer", "me")
        good = hs256(claims(aud="rc", iss="me"))
        keep = self.sse(gw, "/api/v1/events?room_id=lobby", headers=bearer(good))
        h, p, s = good.split(".")
        rows = {
            "missing": None,
            "not bearer": "Basic xyz",
            "malformed": "Bearer abc",
            "not base64url": "Bearer %s.%s.%s" % (h, p, s[:-2] + "=="),
            "truncated": "Bearer %s.%s" % (h, p),
            "expired": "Bearer " + hs256(claims(ttl=-5, aud="rc", iss="me")),
            "nbf in the future": "Bearer " + hs256(claims(aud="rc", iss="me", nbf=int(time.time()) + 600)),
            "bad signature": "Bearer " + hs256(claims(aud="rc", iss="me"), secret="x" * 40),
            "tampered payload": "Bearer %s.%s.%s" % (h, b64(json.dumps(claims(read=["*"], aud="rc", iss="me")).encode()), s),
            "alg none": "Bearer %s.%s." % (b64(b'{"alg":"none"}'), p),
            "alg none signed": "Bearer " + hs256(claims(aud="rc", iss="me"), header={"alg": "none"}),
            "wrong aud": "Bearer " + hs256(claims(aud="other", iss="me")),
            "wrong iss": "Bearer " + hs256(claims(aud="rc", iss="other")),
            "too large": "Bearer " + hs256(claims(aud="rc", iss="me", pad="x" * 12000)),
        }
        for name, auth in rows.items():
            with self.subTest(name):
                r = self.get(gw, "/api/v1/events?room_id=lobby", headers={"Authorization": auth} if auth else None)
                self.assert401(r)
        # a 16 KiB token is over the header limit before any crypto
        r = self.get(gw, "/api/v1/events?room_id=lobby", headers=bearer("a" * 16384))
        self.assertIn(r.status, (401, 431), r)
        # the gateway is up and the first stream still gets its room
        eid = self.gateway_publisher(gw, "--aud", "rc", "--iss", "me")({"type": "t", "room_id": "lobby"})
        self.assertEqual(keep.events(1)[0].id, eid)

    def test_403_names_the_room_and_401_before_rooms(self):
        gw = self.gateway()
        tok = self.mint("--sub", "alice", "--rooms", "lobby,team-42:*")
        self.sse(gw, "/api/v1/events?room_id=lobby,team-42:x", headers=bearer(tok))
        r = self.get(gw, "/api/v1/events?room_id=lobby,secret", headers=bearer(tok))
        self.assertJSONError(r, 403, "forbidden", "'secret'")
        r = self.get(gw, "/api/v1/events?room_id=team-43:x", headers=bearer(tok))
        self.assertJSONError(r, 403, "forbidden", "'team-43:x'")
        # no room list, no firehose grant
        r = self.get(gw, "/api/v1/events", headers=bearer(tok))
        self.assertJSONError(r, 403, "forbidden", "firehose")
        # without a token nothing about rooms is said
        self.assert401(self.get(gw, "/api/v1/events?room_id=secret"))

    def test_firehose_grant(self):
        gw = self.gateway()
        tok = self.mint("--sub", "ops", "--firehose")
        c = self.sse(gw, "/api/v1/events", headers=bearer(tok))
        svc = self.gateway_publisher(gw)
        eid = svc({"type": "t", "room_id": "anything"})
        self.assertEqual(c.events(1)[0].id, eid)

    def gateway_publisher(self, gw, *extra):
        tok = self.mint("--sub", "svc", "--publish", "*", "--publish-global", *extra)

        def pub(ev):
            return publish(gw.port, ev, headers=bearer(tok))
        return pub

    def test_publish_grant_and_global(self):
        gw = self.gateway("--publish-token", "servicetoken")
        tok = self.mint("--sub", "bob", "--rooms", "lobby", "--publish", "lobby")
        r = harness.post_json(gw.port, {"type": "t", "room_id": "lobby"}, headers=bearer(tok))
        self.assertEqual(r.status, 201, r)
        r = harness.post_json(gw.port, [{"type": "t", "room_id": "lobby"}, {"type": "t", "room_id": "x"}],
                              headers=bearer(tok))
        self.assertJSONError(r, 403, "forbidden", "'x'")
        r = harness.post_json(gw.port, {"type": "t"}, headers=bearer(tok))
        self.assertJSONError(r, 403, "forbidden", "$global")
        g = self.mint("--sub", "bob", "--publish", "lobby", "--publish-global")
        self.assertEqual(harness.post_json(gw.port, {"type": "t"}, headers=bearer(g)).status, 201)
        # the service token still publishes anywhere
        r = harness.post_json(gw.port, {"type": "t", "room_id": "x"}, headers=bearer("servicetoken"))
        self.assertEqual(r.status, 201, r)
        # no token, a read-only token's bad signature: 401
        self.assert401(harness.post_json(gw.port, {"type": "t", "room_id": "lobby"}))
        self.assert401(harness.post_json(gw.port, {"type": "t", "room_id": "lobby"},
                                         headers=bearer(hs256(claims(), secret="y" * 40))))
        # a cookie does not publish (CSRF)
        gw2 = self.gateway("--auth-cookie", "rc")
        r = harness.post_json(gw2.port, {"type": "t", "room_id": "lobby"}, headers={"Cookie": "rc=" + tok})
        self.assert401(r)

    def test_cookie_and_header(self):
        gw = self.gateway("--auth-cookie", "rc_token")
        lobby = self.mint("--sub", "alice", "--rooms", "lobby")
        other = self.mint("--sub", "alice", "--rooms", "other")
        self.sse(gw, "/api/v1/events?room_id=lobby", headers={"Cookie": "a=b; rc_token=%s; c=d" % lobby})
        # both: the header wins
        r = self.get(gw, "/api/v1/events?room_id=lobby", headers={"Cookie": "rc_token=" + lobby,
                                                                   "Authorization": "Bearer " + other})
        self.assertJSONError(r, 403, "forbidden", "'lobby'")
        self.sse(gw, "/api/v1/events?room_id=other", headers={"Cookie": "rc_token=" + lobby,
                                                              "Authorization": "Bearer " + other})
        # a bad header is not rescued by a good cookie
        r = self.get(gw, "/api/v1/events?room_id=lobby", headers={"Cookie": "rc_token=" + lobby,
                                                                   "Authorization": "Bearer nope"})
        self.assert401(r)
        # another cookie name: no token
        self.assert401(self.get(gw, "/api/v1/events?room_id=lobby", headers={"Cookie": "rc=" + lobby}))
        # the query parameter only with --auth-query-param
        self.assert401(self.get(gw, "/api/v1/events?room_id=lobby&access_token=" + lobby))
        gq = self.gateway("--auth-query-param")
        self.sse(gq, "/api/v1/events?room_id=lobby&access_token=" + lobby)

    def test_expiry_then_resume_without_loss(self):
        gw = self.gateway("--jwt-leeway-s", "0")
        pub = self.gateway_publisher(gw)
        short = hs256(claims(read=["lobby"], ttl=2))
        c = self.sse(gw, "/api/v1/events?room_id=lobby", headers=bearer(short))
        first = pub({"type": "t", "room_id": "lobby", "n": 0})
        self.assertEqual(c.events(1)[0].id, first)
        self.assertTrue(c.wait_eof(scaled(6)), "the stream did not end when its token expired")
        body = bytes(c.body_raw).decode()
        self.assertIn("event: stream.expired\n", body)
        last = [e for e in c.collect(0)]
        self.assertTrue(any(isinstance(e, harness.SSEEvent) and json.loads(e.data) == {"type": "stream.expired"}
                            for e in last) or '{"type":"stream.expired"}' in body)
        self.assertNotIn("stream.reset", body)
        # published while the client had no stream
        missed = [pub({"type": "t", "room_id": "lobby", "n": i}) for i in range(1, 4)]
        # the expired token is refused; a fresh one with Last-Event-ID loses nothing
        self.assert401(self.get(gw, "/api/v1/events?room_id=lobby", headers=bearer(short)))
        fresh = self.mint("--sub", "alice", "--rooms", "lobby")
        c2 = self.sse(gw, "/api/v1/events?room_id=lobby",
                      headers={"Authorization": "Bearer " + fresh, "Last-Event-ID": c.last_id})
        self.assertEqual([e.id for e in c2.events(3)], missed)

    def test_key_rotation_sighup(self):
        gw = self.gateway()
        old = self.mint("--sub", "alice", "--rooms", "lobby")
        c = self.sse(gw, "/api/v1/events?room_id=lobby", headers=bearer(old))
        with open(self.secret, "w") as f:
            f.write("n" * 40)
        # a file change alone is picked up within the sweep, SIGHUP at once
        gw.proc.signal(signal.SIGHUP)
        new = self.mint("--sub", "alice", "--rooms", "lobby")
        wait_until(lambda: self.get(gw, "/api/v1/events?room_id=lobby", headers=bearer(old)).status == 401,
                   scaled(5), "the old key refused")
        self.sse(gw, "/api/v1/events?room_id=lobby", headers=bearer(new))
        # a broken file keeps the keys
        with open(self.secret, "w") as f:
            f.write("short")
        gw.proc.signal(signal.SIGHUP)
        wait_until(lambda: "keys not reloaded" in gw.proc.log(), scaled(5), "the failed reload logged")
        self.sse(gw, "/api/v1/events?room_id=lobby", headers=bearer(new))
        self.assertTrue(gw.proc.alive())
        self.assertFalse(c.eof)

    def test_jwks_file_change_and_unknown_kid(self):
        priv1 = os.path.join(self.cluster.dir, "k1.jwk")
        priv2 = os.path.join(self.cluster.dir, "k2.jwk")
        jwks = os.path.join(self.cluster.dir, "jwks.json")
        jwks2 = os.path.join(self.cluster.dir, "jwks2.json")
        for args in (("--kid", "k1", "--out", priv1, "--jwks-out", jwks),
                     ("--kid", "k2", "--out", priv2, "--jwks-out", jwks2)):
            r = self.cluster.cli("keygen", "--alg", "ES256", *args)
            self.assertEqual(r.returncode, 0, r.stderr)
        gw = self.cluster.start_gateway("--auth", "jwt", "--jwt-alg", "ES256", "--jwt-keys-file", jwks)
        t1 = self.mint("--sub", "a", "--rooms", "lobby", key=priv1)
        t2 = self.mint("--sub", "a", "--rooms", "lobby", key=priv2)
        self.sse(gw, "/api/v1/events?room_id=lobby", headers=bearer(t1))
        self.assert401(self.get(gw, "/api/v1/events?room_id=lobby", headers=bearer(t2)))  # unknown kid
        # HS256 signed with the public key: algorithm not allowed
        with open(jwks) as f:
            self.assert401(self.get(gw, "/api/v1/events?room_id=lobby",
                                    headers=bearer(hs256(claims(), secret=f.read()))))
        # both keys, by replacing the file (no signal)
        with open(jwks) as f1, open(jwks2) as f2:
            both = {"keys": json.load(f1)["keys"] + json.load(f2)["keys"]}
        tmp = jwks + ".tmp"
        with open(tmp, "w") as f:
            json.dump(both, f)
        os.rename(tmp, jwks)
        wait_until(lambda: self.status(gw, "/api/v1/events?room_id=lobby", headers=bearer(t2)) == 200,
                   scaled(5), "the new key picked up from the file")
        # garbage keeps the keys
        with open(tmp, "w") as f:
            f.write("{garbage")
        os.rename(tmp, jwks)
        wait_until(lambda: "keys not reloaded" in gw.proc.log(), scaled(5), "the failed reload logged")
        self.sse(gw, "/api/v1/events?room_id=lobby", headers=bearer(t1))

    def test_revocation_across_two_gateways(self):
        g1 = self.gateway()
        g2 = self.gateway()
        a = self.mint("--sub", "alice", "--rooms", "lobby")
        b = self.mint("--sub", "bob", "--rooms", "lobby", "--jti", "bob-1")
        ca = [self.sse(g, "/api/v1/events?room_id=lobby", headers=bearer(a)) for g in (g1, g2)]
        cb = [self.sse(g, "/api/v1/events?room_id=lobby", headers=bearer(b)) for g in (g1, g2)]
        r = self.cluster.cli("revoke", "--sub", "alice")
        self.assertEqual(r.returncode, 0, r.stderr)
        for c in ca:
            self.assertTrue(c.wait_eof(scaled(2)), "alice's stream was not closed")
            self.assertIn("event: stream.revoked", bytes(c.body_raw).decode())
        self.assertFalse(any(c.eof for c in cb))
        # alice cannot come back with the same token; bob still reads
        self.assert401(self.get(g1, "/api/v1/events?room_id=lobby", headers=bearer(a)))
        r = self.cluster.cli("revoke", "--jti", "bob-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        for c in cb:
            self.assertTrue(c.wait_eof(scaled(2)), "bob's stream was not closed")
        self.assertEqual(g1.proc.alive() and g2.proc.alive(), True)


if __name__ == "__main__":
    harness.main()
