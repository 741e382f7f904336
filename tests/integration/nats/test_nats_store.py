"""
--store nats: the broker keeps its history in a NATS JetStream stream.

Each test starts its own nats-server(s) (JetStream, a temporary store,
127.0.0.1, port picked by the server), a broker with --store nats and a
gateway. What a user checks: events published through the gateway stream
to subscribers; a broker SIGKILLed and started again keeps its epoch and
every acknowledged id with its payload, and a stream resumes across it
without a reset or gap; an idempotency key publishes once, also across a
restart; while NATS is down a publish is answered 503 storage_unavailable,
and publishing comes back by itself with NATS; with a 3-node cluster and 3
replicas, SIGKILLing the node that leads the stream loses nothing that was
acknowledged. Exits 77 (skipped) when nats-server is not installed.
"""

import json
import os
import re
import signal
import socket
import sys
import threading
import time
import unittest

import nats_util
from nats_util import harness, scaled

nats_util.require_nats_server()

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "netbed"))
import nats_client  # noqa: E402  (after the sys.path insert)

gseq_of = harness.gseq
epoch_of = lambda i: harness.parse_id(i)[0]  # noqa: E731


def ev(i, room="room-n", **kw):
    d = {"type": "n", "room_id": room, "i": i}
    d.update(kw)
    return d


class NatsStoreTest(nats_util.NatsTest):
    def start_broker(self, urls, *extra, old=None):
        args = ("--store", "nats", "--nats-url", ",".join(urls), "--nats-timeout-ms", "2000") + extra
        if old is None:
            return self.cluster.start_broker(*args)
        return self.cluster.start_broker(*args, bus=old.bus, api=old.api)

    def replay_all(self, gw, epoch, last_id):
        """Every event of the history from gseq 1, through a stream resumed at <epoch>-0."""
        s = self.sse(gw, "/api/v1/events", headers={"Last-Event-ID": "%s-0" % epoch})
        got = s.events_until(last_id, timeout=scaled(20))
        s.close()
        return got

    def stats(self):
        r = self.cluster.cli("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def assert_no_reset(self, got):
        for e in got:
            self.assertNotEqual(json.loads(e.data).get("type"), "stream.reset", e.data)

    # -- publish and stream --

    def test_publish_stream_and_subjects(self):
        n = nats_util.start_single(self.cluster)
        self.nats.append(n)
        self.start_broker([n.url])
        gw = self.cluster.start_gateway()
        s = self.sse(gw, "/api/v1/events")
        # rooms whose ids hold bytes a subject token cannot: '.', ':', '@'
        bodies = [ev(1, room="a.b"), ev(2, room="x:y@z"), {"type": "global.thing", "g": True},
                  ev(3, room="a.b", nested={"k": [1, 2.5, "\u00e9"]})]
        ids = [harness.publish(gw.port, bodies[0])]
        ids += harness.publish(gw.port, bodies[1:])
        self.assertEqual(len({epoch_of(i) for i in ids}), 1)
        self.assertEqual([gseq_of(i) for i in ids], [1, 2, 3, 4])
        got = s.events_until(ids[-1], timeout=scaled(10))
        self.assertEqual([e.id for e in got], ids)
        self.assertEqual([json.loads(e.data) for e in got], bodies)
        st = self.stats()
        self.assertTrue(st["nats"]["connected"])
        self.assertEqual(st["nats"]["published"], 4)
        self.assertEqual(st["nats"]["follow_seq"], 4)
        self.assertEqual(st["last_id"], ids[-1])
        # the stream NATS holds: one subject per room, encoded, and one for global events
        j = n.jsz("streams=true&accounts=true&config=true")
        [acc] = [a for a in j["account_details"] if a.get("stream_detail")]
        [sd] = acc["stream_detail"]
        self.assertEqual(sd["name"], "roomcast")
        self.assertEqual(sd["config"]["subjects"], ["roomcast.>"])
        self.assertEqual(sd["state"]["messages"], 4)
        self.assertEqual(sd["state"]["num_subjects"], 3)

    # -- SIGKILL the broker --

    def test_sigkill_restart_keeps_epoch_and_every_event(self):
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        self.start_broker([n.url])
        gw = c.start_gateway()
        stream = self.sse(gw, "/api/v1/events")
        acked, lock, stop, errors = {}, threading.Lock(), threading.Event(), []

        def publisher(k):
            i = 0
            while not stop.is_set():
                i += 1
                body = ev(i, room="room-%d" % (k % 3), p=k)
                try:
                    r = harness.post_json(gw.port, body)
                except OSError:
                    time.sleep(0.01)
                    continue
                if r.status == 201:
                    with lock:
                        acked[r.json()["id"]] = body
                elif r.status not in (503, 504):
                    errors.append((r.status, r.body[:200]))
                time.sleep(0.003)

        threads = [threading.Thread(target=publisher, args=(k,), daemon=True) for k in range(3)]
        for t in threads:
            t.start()
        try:
            for rnd in range(3):
                n0 = len(acked)
                harness.wait_until(lambda: len(acked) >= n0 + 40, scaled(20), "40 more publishes acknowledged")
                old = c.broker
                old.proc.kill()
                self.start_broker([n.url], old=old)
            n0 = len(acked)
            harness.wait_until(lambda: len(acked) >= n0 + 40, scaled(20), "publishes after the last restart")
        finally:
            stop.set()
            for t in threads:
                t.join(scaled(20))
        self.assertEqual(errors, [])
        with lock:
            ids = sorted(acked, key=gseq_of)
        self.assertEqual(len({epoch_of(i) for i in ids}), 1, "one epoch across three SIGKILLs")
        [epoch] = {epoch_of(i) for i in ids}
        last = ids[-1]
        # the stream opened before the first kill: no reset, no gap, no duplicate
        got = stream.events_until(last, timeout=scaled(30))
        self.assert_no_reset(got)
        self.assertEqual([gseq_of(e.id) for e in got], list(range(1, gseq_of(last) + 1)))
        seen = {e.id: json.loads(e.data) for e in got}
        for i in ids:
            self.assertEqual(seen.get(i), acked[i], i)
        # and from the history the last broker read back from the stream
        got = self.replay_all(gw, epoch, last)
        seen = {e.id: json.loads(e.data) for e in got}
        for i in ids:
            self.assertEqual(seen.get(i), acked[i], i)

    # -- idempotency --

    def test_idempotency_key_publishes_once_across_restart(self):
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        self.start_broker([n.url])
        gw = c.start_gateway()
        s = self.sse(gw, "/api/v1/events")
        body = ev(1, room="room-k")
        first = harness.publish(gw.port, body, headers={"Idempotency-Key": "order-42"})
        again = harness.publish(gw.port, body, headers={"Idempotency-Key": "order-42"})
        self.assertEqual(again, first)
        other = harness.publish(gw.port, ev(2, room="room-k"))
        old = c.broker
        old.proc.kill()
        self.start_broker([n.url], old=old)
        harness.wait_until(lambda: harness.request(gw.port, "GET", "/readyz").status == 200, scaled(10),
                           "gateway ready again")
        harness.wait_until(lambda: harness.post_json(gw.port, body, headers={"Idempotency-Key": "order-42"})
                           .status == 201, scaled(10), "publishing again")
        third = harness.publish(gw.port, body, headers={"Idempotency-Key": "order-42"})
        self.assertEqual(third, first, "the key is the stream's (Nats-Msg-Id): known after a restart")
        # two keys of one batch, one of them known: one new event
        ids = harness.publish(gw.port, [dict(body, key="order-42"), dict(ev(3, room="room-k"), key="order-43")])
        self.assertEqual(ids[0], first)
        last = harness.publish(gw.port, ev(4, room="room-k"))
        got = s.events_until(last, timeout=scaled(10))
        self.assert_no_reset(got)
        self.assertEqual([e.id for e in got], [first, other, ids[1], last])
        self.assertEqual(self.stats()["nats"]["duplicates"], 3)  # the wait above, the third, the batch

    # -- --max-rooms: the rooms this broker has seen --

    def stats_of(self, b):
        r = harness.subprocess.run([harness.CLI_BIN, "stats", "--broker-api", b.api], capture_output=True, text=True,
                                   timeout=scaled(20))
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_max_rooms_counts_the_rooms_each_broker_has_seen(self):
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        b1 = self.start_broker([n.url], "--max-rooms", "2")
        gw1 = c.start_gateway(broker=b1)
        for room in ("a", "b"):
            harness.publish(gw1.port, ev(1, room=room))
        self.assertJSONError(harness.post_json(gw1.port, ev(2, room="c")), 503, code="too_many_rooms",
                             message_has="events")
        # an array that holds one new room is refused whole: nothing of it went into the stream
        self.assertJSONError(harness.post_json(gw1.port, [ev(3, room="a"), ev(4, room="c")]), 503,
                             code="too_many_rooms")
        self.assertEqual(self.stats_of(b1)["gseq"], 2)
        # the rooms it has, and global events, go on
        ids = harness.publish(gw1.port, [ev(5, room="a"), ev(6, room="b"), {"type": "g"}])
        self.assertEqual([gseq_of(i) for i in ids], [3, 4, 5])

        # another broker, with room for more, publishes into two new rooms: the first one reads them from the
        # stream and counts them; the rooms it has seen stay open to it, a new one is refused
        b2 = self.start_broker([n.url], "--max-rooms", "10")
        gw2 = c.start_gateway(broker=b2)
        harness.publish(gw2.port, [ev(7, room="c"), ev(8, room="d")])
        harness.wait_until(lambda: self.stats_of(b1)["nats"]["follow_seq"] == 7, scaled(10), "b1 following")
        self.assertEqual(gseq_of(harness.publish(gw1.port, ev(9, room="d"))), 8)
        self.assertJSONError(harness.post_json(gw1.port, ev(10, room="e")), 503, code="too_many_rooms")

        # restarted, it counts the rooms of the stream's tail it read back
        b1.proc.kill()
        b1 = self.start_broker([n.url], "--max-rooms", "2", old=b1)
        harness.wait_until(lambda: harness.request(gw1.port, "GET", "/readyz").status == 200, scaled(10),
                           "gateway ready again")
        harness.wait_until(lambda: harness.post_json(gw1.port, ev(11, room="a")).status == 201, scaled(10),
                           "publishing again")
        self.assertJSONError(harness.post_json(gw1.port, ev(12, room="e")), 503, code="too_many_rooms")
        self.assertEqual(self.stats_of(b1)["gseq"], 9)

    # -- NATS restarted under the broker --

    def test_nats_down_answers_503_then_recovers(self):
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        self.start_broker([n.url])
        gw = c.start_gateway()
        s = self.sse(gw, "/api/v1/events")
        before = harness.publish(gw.port, ev(1))
        n.kill()
        r = harness.post_json(gw.port, ev(2))
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["error"]["code"], "storage_unavailable")
        n.start()  # same port, same store
        harness.wait_until(lambda: harness.post_json(gw.port, ev(3)).status == 201, scaled(30),
                           "a publish accepted once NATS is back")
        after = harness.publish(gw.port, ev(4))
        self.assertEqual(epoch_of(after), epoch_of(before))
        got = s.events_until(after, timeout=scaled(20))
        self.assert_no_reset(got)
        self.assertEqual([gseq_of(e.id) for e in got], list(range(1, gseq_of(after) + 1)))
        self.assertEqual([json.loads(e.data)["i"] for e in got], [1, 3, 4])
        st = self.stats()["nats"]
        self.assertTrue(st["connected"])
        self.assertGreaterEqual(st["reconnects"], 1)

    def test_publish_waits_for_a_quick_reconnection(self):
        """
        A publish made just after the broker lost its NATS connection (its
        node restarted, or stopped in lame duck mode: the broker reconnects
        within milliseconds to another node, or here to the same one once it
        is back) waits for the connection to come back, up to
        --nats-reconnect-wait-ms after the loss (2 s), instead of a 503: a
        planned restart costs publishers nothing. Before: 503 at once.
        """
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        self.start_broker([n.url], "--nats-timeout-ms", "10000")
        gw = c.start_gateway("--publish-timeout-ms", "20000")
        s = self.sse(gw, "/api/v1/events")
        before = harness.publish(gw.port, ev(1))
        n.kill()
        answer = {}

        def post():
            answer["r"] = harness.post_json(gw.port, ev(2), timeout=30)

        t = threading.Thread(target=post, daemon=True)
        t.start()
        n.start()  # same port, same store: ready in a few hundred ms
        t.join(30)
        r = answer.get("r")
        self.assertIsNotNone(r, "no answer")
        self.assertEqual(r.status, 201, r)
        got = s.events_until(r.json()["id"], timeout=scaled(20))
        self.assert_no_reset(got)
        self.assertEqual([e.id for e in got], [before, r.json()["id"]])

    def test_nats_down_a_new_room_answers_503_at_once(self):
        """
        While the broker has no connection to NATS, a publish is refused at
        once (503 storage_unavailable), also the first one into a room the
        broker has not seen, which it must read before it can fence it: not
        after --nats-timeout-ms (10 s here).
        """
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        self.start_broker([n.url], "--nats-timeout-ms", "10000")
        gw = c.start_gateway("--publish-timeout-ms", "20000")
        harness.publish(gw.port, ev(1, room="seen"))
        n.kill()
        harness.wait_until(lambda: not self.stats()["nats"]["connected"], scaled(10), "the broker to see NATS gone")
        t = time.monotonic()
        r = harness.post_json(gw.port, ev(2, room="never-seen"), timeout=30)
        took = time.monotonic() - t
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json()["error"]["code"], "storage_unavailable")
        self.assertLess(took, 3.0, "a publish into a new room waited %.1f s with NATS down" % took)

    # -- an existing stream that does not fit --

    def test_stream_config_mismatch_refused(self):
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        b = self.start_broker([n.url], "--history-events", "1000")
        b.proc.stop()
        # replicas other than the stream's: refused with the reason, exit 1
        p = harness.Proc("broker-r3", [harness.BROKER_BIN, "--store", "nats", "--nats-url", n.url,
                                       "--nats-replicas", "3", "--bus", "tcp://127.0.0.1:0",
                                       "--api", "tcp://127.0.0.1:0"], c.dir)
        self.assertEqual(p.wait(scaled(20)), 1, p.log())
        self.assertIn("replicas differ from --nats-replicas", p.log())
        # a stream name NATS would read as several tokens: a bad option, exit 2
        p = harness.Proc("broker-bad-name", [harness.BROKER_BIN, "--store", "nats", "--nats-url", n.url,
                                             "--nats-stream", "a.b"], c.dir)
        self.assertEqual(p.wait(scaled(10)), 2, p.log())
        self.assertIn("--nats-stream must be", p.log())
        # other retention options: the stream follows them, and the epoch stays
        b2 = self.start_broker([n.url], "--history-events", "2000")
        self.assertIn("stream changed to the options'", b2.proc.log())
        self.assertIn("max_msgs=2000", b2.proc.log())
        epoch = lambda log: re.search(r"msg=\"broker ready\" epoch=([0-9a-f]+)", log).group(1)  # noqa: E731
        self.assertEqual(epoch(b2.proc.log()), epoch(b.proc.log()))

    def test_stream_without_direct_get_is_given_it(self):
        """
        The broker reads rooms (and, while its follower is silent, events)
        by direct get, which needs the stream's allow_direct. A stream made
        without it (by hand, or by another tool) is changed to allow it at
        start, as the retention options are: a publish into a new room then
        goes through at once, not after --nats-timeout-ms and a 503.
        """
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        b = self.start_broker([n.url])  # creates the stream as the broker wants it
        b.proc.stop()
        js = self.js_to(n)
        cfg = js.stream_info("roomcast")["config"]
        cfg["allow_direct"] = False
        js.api("STREAM.UPDATE.roomcast", cfg)
        self.assertFalse(js.stream_info("roomcast")["config"].get("allow_direct"))
        b2 = self.start_broker([n.url], "--nats-timeout-ms", "10000")
        gw = c.start_gateway("--publish-timeout-ms", "20000")
        t = time.monotonic()
        r = harness.post_json(gw.port, ev(1, room="a-new-room"), timeout=30)
        took = time.monotonic() - t
        self.assertEqual(r.status, 201, r)
        self.assertLess(took, 3.0)
        self.assertIn("allow_direct=true", b2.proc.log())
        self.assertTrue(js.stream_info("roomcast")["config"].get("allow_direct"))

    # -- two brokers on one stream, both publishing into the same rooms --

    def test_two_brokers_active_active_one_order(self):
        c = self.cluster
        n = nats_util.start_single(c)
        self.nats.append(n)
        b1 = self.start_broker([n.url])
        b2 = self.start_broker([n.url])
        gws = [c.start_gateway(broker=b1), c.start_gateway(broker=b2)]
        threads_n, rounds, batch = 4, 25, 5
        total = threads_n * rounds * batch
        tails = []
        for b in (b1, b2):
            out = open(__import__("os").path.join(c.dir, "tail-%d.out" % len(tails)), "w+")
            p = harness.subprocess.Popen([harness.CLI_BIN, "tail", "--count", str(total), "--broker-bus", b.bus],
                                         stdout=out, stderr=harness.subprocess.DEVNULL)
            tails.append((p, out))
            self.addCleanup(lambda p=p: (p.kill(), p.wait()))  # reaped whatever happens
        time.sleep(0.5)  # the SUB sockets connect (nng gives no signal for it; they only need to be early)
        acked, lock, errors = [], threading.Lock(), []

        def run(k):
            gw = gws[k % 2]
            try:
                for i in range(rounds):
                    evs = [ev(i * batch + j, room="room-%d" % ((i + j) % 3), p=k) for j in range(batch)]
                    ids = harness.publish(gw.port, evs)
                    with lock:
                        acked.extend(zip(ids, evs))
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=run, args=(k,)) for k in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(60))
        self.assertEqual(errors, [])
        self.assertEqual(len(acked), total)
        seqs = []
        for p, out in tails:
            self.assertEqual(p.wait(scaled(30)), 0)
            out.seek(0)
            seqs.append([json.loads(line) for line in out if line.startswith("{")])
            out.close()
        # every gseq once, the same order on both buses, each room's rseq 1, 2, 3 ...
        self.assertEqual(seqs[0], seqs[1])
        self.assertEqual([gseq_of(e["id"]) for e in seqs[0]], list(range(1, total + 1)))
        rseq = {}
        for e in seqs[0]:
            rseq[e["room_id"]] = rseq.get(e["room_id"], 0) + 1
            self.assertEqual(e["rseq"], rseq[e["room_id"]], e)
        byid = {e["id"]: e["event"] for e in seqs[0]}
        for i, body in acked:
            self.assertEqual(byid[i], body)
        st1, st2 = (json.loads(harness.subprocess.run(
            [harness.CLI_BIN, "stats", "--broker-api", b.api], capture_output=True, text=True,
            timeout=scaled(20)).stdout) for b in (b1, b2))
        self.assertEqual(st1["nats"]["follow_seq"], total)
        self.assertEqual(st2["nats"]["follow_seq"], total)
        __import__("sys").stderr.write("two brokers: fence retries %d + %d\n" % (
            st1["nats"]["fence_retries"], st2["nats"]["fence_retries"]))

    # -- a publish sent while the stream has no leader --

    def js_to(self, server):
        """A JetStream API client on a raw connection to server (closed at cleanup)."""
        sock = socket.create_connection((harness.HOST, server.port), timeout=scaled(5))
        conn = nats_client.Conn(sock, timeout=scaled(5))
        self.addCleanup(conn.close)
        return nats_client.JetStream(conn, timeout=scaled(5))

    def test_server_answers_a_resent_duplicate_before_its_fence(self):
        """
        What the broker's re-send relies on (nats-server, clustered stream):
        an event sent again with the same Nats-Msg-Id and the same per-subject
        fence after the first copy was stored is answered as a duplicate with
        the original sequence, not refused by the fence that copy moved on.
        """
        servers = nats_util.start_cluster(self.cluster, 3)
        self.nats.extend(servers)
        js = self.js_to(servers[0])
        harness.wait_until(lambda: self._try(lambda: js.stream_create(
            {"name": "fence", "subjects": ["fence.>"], "num_replicas": 3, "duplicate_window": 120 * 10**9})),
            scaled(30), "the stream created (the cluster has a meta leader)")
        fence0 = {"Nats-Expected-Last-Subject-Sequence": "0"}
        first = js.publish("fence.a", b"{}", msg_id="m-1", headers=fence0)
        self.assertEqual(first["seq"], 1)
        again = js.publish("fence.a", b"{}", msg_id="m-1", headers=fence0)
        self.assertEqual((again["seq"], again.get("duplicate")), (1, True), again)
        with self.assertRaises(nats_client.JSAPIError) as e:
            js.publish("fence.a", b"{}", msg_id="m-2", headers=fence0)  # a new event behind a stale fence
        self.assertEqual(e.exception.err_code, 10071, e.exception)  # JSStreamWrongLastSequenceErr

    @staticmethod
    def _try(f):
        try:
            f()
            return True
        except (nats_client.NatsError, TimeoutError, OSError):
            return False

    def broker_off_the_leader(self, nats_timeout_ms, room):
        """
        A 3-node cluster, a broker (R3) talking to one node, a gateway, a
        stream of every event and one event published in room; the stream's
        leader moved off the broker's node. (servers, gw, stream, first id,
        the leader's NatsServer).
        """
        c = self.cluster
        servers = nats_util.start_cluster(c, 3)
        self.nats.extend(servers)
        home = servers[0]
        js = self.js_to(home)
        # the broker's first request would wait out its timeout if no meta leader answered it
        harness.wait_until(lambda: self._try(lambda: js.account_info(timeout=1.0)), scaled(30),
                           "the cluster's meta leader")
        self.start_broker([home.url], "--nats-replicas", "3", "--nats-timeout-ms", str(nats_timeout_ms))
        gw = c.start_gateway("--publish-timeout-ms", "40000")
        stream = self.sse(gw, "/api/v1/events")
        first = harness.publish(gw.port, ev(1, room=room))
        return servers, gw, stream, first, self.leader_not(servers, home, js)

    def leader_not(self, servers, home, js):
        """Moves the stream's leadership off home (bounded); returns the leader's NatsServer."""
        for _ in range(6):
            leader = harness.wait_until(lambda: nats_util.stream_leader(servers, "roomcast"), scaled(20),
                                        "a stream leader")
            if leader != home.name:
                return [sv for sv in servers if sv.name == leader][0]
            self._try(lambda: js.api("STREAM.LEADER.STEPDOWN.roomcast", timeout=2.0))
            harness.wait_until(lambda: nats_util.stream_leader(servers, "roomcast") not in (None, leader),
                               scaled(20), "another stream leader after the step-down")
        raise AssertionError("the stream leader stayed on %s after 6 step-downs" % home.name)

    def test_publish_lost_with_the_leader_answered_soon_after_a_new_one(self):
        """
        A publish that went to the stream's leader as it died gets no answer
        from JetStream; the broker sends it again (same Nats-Msg-Id, same
        fence) about every second until --nats-timeout-ms, so it is
        acknowledged soon after the two nodes left elect a leader, not when
        the timeout runs out. Made deterministic: the leader (not the node
        the broker talks to) is SIGSTOPped, a POST goes out (routed to it,
        unanswered), then the leader is SIGKILLed. The POST must be answered
        201 within 15 s of the kill (nats-server 2.9 elects in 4-9 s), where
        without the re-send it is answered only when the 30 s timeout ran out.
        """
        _, gw, stream, first, victim = self.broker_off_the_leader(30000, "room-n")
        victim.proc.signal(signal.SIGSTOP)
        answer = {}

        def post():
            r = harness.post_json(gw.port, ev(2), timeout=60)
            answer["r"], answer["t"] = r, time.monotonic()

        t = threading.Thread(target=post, daemon=True)
        t.start()
        time.sleep(1.5)  # the publish went to the stopped leader
        self.assertNotIn("r", answer, "answered by a stopped leader?")
        victim.kill()
        killed = time.monotonic()
        t.join(60)
        self.assertIn("r", answer, "no answer within 60 s")
        r, after = answer["r"], answer["t"] - killed
        sys.stderr.write("publish lost with the leader: answered %d, %.1f s after the kill\n" % (r.status, after))
        self.assertEqual(r.status, 201, r)
        self.assertLess(after, 15.0, "answered only when --nats-timeout-ms (30 s) ran out")
        self.assertGreaterEqual(self.stats()["nats"]["resends"], 1)
        last = r.json()["id"]
        got = stream.events_until(last, timeout=scaled(20))
        self.assert_no_reset(got)
        self.assertEqual([e.id for e in got], [first, last])
        victim.start()

    def test_a_new_room_is_read_while_the_stream_elects_a_leader(self):
        """
        Before its first event in a room, a broker reads the room's last
        message (its fence). It reads it by direct get, which the replicas
        answer too: while the leader is gone (SIGSTOPped, then SIGKILLed; the
        two nodes left take 4-9 s to elect one) the read is answered, or
        asked again, and the POST is answered 201 soon after the new leader
        exists. Before: the read was a request to the leader, unanswered
        until --nats-timeout-ms (20 s here) ran out, then 503.
        """
        servers, gw, stream, first, victim = self.broker_off_the_leader(20000, "seen")
        victim.proc.signal(signal.SIGSTOP)
        answer = {}

        def post():
            r = harness.post_json(gw.port, ev(2, room="new-room"), timeout=60)
            answer["r"], answer["t"] = r, time.monotonic()

        t = threading.Thread(target=post, daemon=True)
        t.start()
        time.sleep(1.0)
        victim.kill()
        killed = time.monotonic()

        def new_leader():
            lead = nats_util.stream_leader(servers, "roomcast")
            return lead if lead != victim.name else None

        elected = harness.wait_until(new_leader, scaled(30), "a new stream leader", interval=0.05)
        t_elected = time.monotonic()
        t.join(60)
        self.assertIn("r", answer, "no answer within 60 s")
        r = answer["r"]
        sys.stderr.write("new room during the election: %d, %.1f s after the kill, %.1f s after %s led\n" % (
            r.status, answer["t"] - killed, answer["t"] - t_elected, elected))
        self.assertEqual(r.status, 201, r)
        self.assertLess(answer["t"] - t_elected, 3.0, "answered long after the new leader")
        got = stream.events_until(r.json()["id"], timeout=scaled(20))
        self.assert_no_reset(got)
        self.assertEqual([e.id for e in got], [first, r.json()["id"]])
        victim.start()

    def test_publishes_go_through_soon_after_the_stream_is_back(self):
        """
        While the stream has no leader (here: its only replica's node is
        down; in a 3-replica stream: while the two nodes left elect one), the
        nats-server the broker talks to answers every publish "no responders"
        at once. The broker sends the event again (same Nats-Msg-Id and fence)
        until --nats-timeout-ms; each POST is answered, and its event
        delivered, soon after the stream is back: not up to the next second,
        and not after nats.c has recreated the broker's follower (its
        consumer died with that node; the events are read by direct get
        meanwhile). Before: re-sends every second, then the answer waited for
        the follower's new consumer; twelve POSTs in twelve rooms were
        answered 0.64 and 1.59 s (mean; two runs) after the stream was back,
        ~0.2 s after.
        """
        c = self.cluster
        servers = nats_util.start_cluster(c, 3)
        self.nats.extend(servers)
        js = self.js_to(servers[0])
        harness.wait_until(lambda: self._try(lambda: js.account_info(timeout=1.0)), scaled(30),
                           "the cluster's meta leader")
        first = self.start_broker([sv.url for sv in servers], "--nats-replicas", "1")  # creates the stream
        holder = harness.wait_until(lambda: nats_util.stream_leader(servers, "roomcast"), scaled(20),
                                    "the stream's node")
        first.proc.stop()
        if nats_util.meta_leader(servers) == holder:
            # the broker's follower must be able to come back without a new metadata leader
            self._try(lambda: js.api("META.LEADER.STEPDOWN", timeout=2.0))
            harness.wait_until(lambda: nats_util.meta_leader(servers) not in (None, holder), scaled(20),
                               "another metadata leader")
        [victim] = [sv for sv in servers if sv.name == holder]
        home = [sv for sv in servers if sv is not victim][0]
        self.start_broker([home.url], "--nats-replicas", "1", "--nats-timeout-ms", "20000")
        gw = c.start_gateway("--publish-timeout-ms", "30000")
        rooms = ["back-%d" % k for k in range(12)]
        stream = self.sse(gw, "/api/v1/events?room_id=" + ",".join(rooms))
        before = harness.publish(gw.port, ev(0, room=rooms[0]))
        victim.kill()
        answers = {}

        def post(k):
            r = harness.post_json(gw.port, ev(k + 1, room=rooms[k]), timeout=60)
            answers[k] = (r, time.monotonic())

        threads = []
        for k in range(len(rooms)):  # spread over 1.8 s: each room's re-sends fall at other times
            t = threading.Thread(target=post, args=(k,), daemon=True)
            t.start()
            threads.append(t)
            time.sleep(0.15)
        time.sleep(0.5)
        self.assertEqual(answers, {}, "answered while the stream's only node was down?")
        victim.start()
        js_home = self.js_to(home)
        harness.wait_until(lambda: self._try(lambda: js_home.stream_info("roomcast", timeout=0.5)), scaled(20),
                           "the stream back", interval=0.01)
        back = time.monotonic()
        for t in threads:
            t.join(60)
        self.assertEqual(sorted(answers), list(range(len(rooms))), "a POST went unanswered")
        for k, (r, _) in sorted(answers.items()):
            self.assertEqual(r.status, 201, (k, r))
        late = sorted(max(0.0, at - back) for _, at in answers.values())
        sys.stderr.write("answered after the stream was back: %s s\n" % " ".join("%.2f" % d for d in late))
        mean = sum(late) / len(late)
        self.assertLess(mean, 0.45, "POSTs answered %.2f s (mean) after the stream was back: %s" % (mean, late))
        ids = [r.json()["id"] for r, _ in answers.values()]
        got = stream.events_until(max(ids, key=gseq_of), timeout=scaled(20))
        self.assert_no_reset(got)
        self.assertEqual(sorted(e.id for e in got), sorted([before] + ids))
        self.assertEqual(len({json.loads(e.data)["i"] for e in got}), len(rooms) + 1)
        self.assertGreater(self.stats()["nats"]["direct_reads"], 0, "the events were not read by direct get")
        # and the follower's consumer comes back (nats.c recreates it): a publish is read without direct gets
        n = [100]

        def consumer_reads():
            reads = self.stats()["nats"]["direct_reads"]
            n[0] += 1
            harness.publish(gw.port, ev(n[0], room=rooms[0]))
            return self.stats()["nats"]["direct_reads"] == reads

        harness.wait_until(consumer_reads, scaled(20), "the follower's consumer back", interval=0.2)

    # -- a 3-node cluster, 3 replicas, the stream's leader SIGKILLed --

    def test_start_while_the_cluster_elects_a_meta_leader(self):
        """
        A broker that starts while the cluster has no metadata leader (it
        died; the others take 4-9 s to elect one) waits for it within
        --nats-connect-wait-ms: its follower's consumer cannot be created
        before, although the stream answers.
        """
        c = self.cluster
        servers = nats_util.start_cluster(c, 3)
        self.nats.extend(servers)
        self.start_broker([s.url for s in servers], "--nats-replicas", "3")  # creates the stream
        harness.wait_until(lambda: nats_util.stream_leader(servers, "roomcast"), scaled(10), "a stream leader")
        meta = nats_util.meta_leader(servers)
        if meta == nats_util.stream_leader(servers, "roomcast"):
            # the stream must keep its leader: move it off the metadata leader
            [other] = [sv for sv in servers if sv.name != meta][:1]
            conn = nats_client.Conn(socket.create_connection((harness.HOST, other.port), timeout=5))
            try:
                nats_client.JetStream(conn).api("STREAM.LEADER.STEPDOWN.roomcast")
            finally:
                conn.close()
            harness.wait_until(lambda: nats_util.stream_leader(servers, "roomcast") not in (None, meta),
                               scaled(20), "the stream leader to move")
        [victim] = [sv for sv in servers if sv.name == meta]
        victim.kill()
        live = [sv.url for sv in servers if sv is not victim]
        argv = [harness.BROKER_BIN, "--bus", "tcp://%s:0" % harness.HOST, "--api", "tcp://%s:0" % harness.HOST,
                "--store", "nats", "--nats-url", ",".join(live), "--nats-replicas", "3", "--nats-timeout-ms", "2000",
                "--nats-connect-wait-ms", "30000"]
        p = c._start("broker", argv)
        harness.wait_until(lambda: "broker ready" in p.log() or not p.alive(), scaled(40),
                           "the broker to start or exit")
        self.assertTrue(p.alive(), "the broker gave up while the cluster elected its leader:\n" + p.log())
        bus, api = harness.wait_broker(p)
        r = harness.subprocess.run([harness.CLI_BIN, "publish", "--broker-api", api, "--room", "r1", "--type", "t"],
                                   capture_output=True, text=True, timeout=scaled(20))
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_cluster_leader_killed_loses_nothing_acknowledged(self):
        c = self.cluster
        servers = nats_util.start_cluster(c, 3)
        self.nats.extend(servers)
        self.start_broker([s.url for s in servers], "--nats-replicas", "3", "--nats-timeout-ms", "3000")
        gw = c.start_gateway("--publish-timeout-ms", "10000")
        stream = self.sse(gw, "/api/v1/events")
        acked, lock, stop, errors, statuses = {}, threading.Lock(), threading.Event(), [], {}

        def publisher(k):
            i = 0
            while not stop.is_set():
                i += 1
                key = "p%d-%d" % (k, i)
                body = ev(i, room="room-%d" % (k % 2), p=k)
                # as a client should: the same key again until it is answered 201
                for _ in range(200):
                    try:
                        r = harness.post_json(gw.port, body, headers={"Idempotency-Key": key},
                                              timeout=scaled(15))
                    except OSError:
                        time.sleep(0.05)
                        continue
                    with lock:
                        statuses[r.status] = statuses.get(r.status, 0) + 1
                    if r.status == 201:
                        with lock:
                            acked.setdefault(r.json()["id"], []).append(body)
                        break
                    if r.status not in (503, 504):
                        errors.append((r.status, r.body[:200]))
                        break
                    time.sleep(0.05)
                time.sleep(0.005)

        threads = [threading.Thread(target=publisher, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        try:
            harness.wait_until(lambda: len(acked) >= 50, scaled(30), "50 publishes acknowledged")
            leader = None
            harness.wait_until(lambda: nats_util.stream_leader(servers, "roomcast"), scaled(10), "a stream leader")
            leader = nats_util.stream_leader(servers, "roomcast")
            [victim] = [s for s in servers if s.name == leader]
            victim.kill()
            n0 = len(acked)
            harness.wait_until(lambda: len(acked) >= n0 + 100, scaled(60),
                               "100 more publishes acknowledged after the leader died")
        finally:
            stop.set()
            for t in threads:
                t.join(scaled(30))
        self.assertEqual(errors, [])
        with lock:
            ids = sorted(acked, key=gseq_of)
            for i in ids:
                self.assertEqual(len({json.dumps(b, sort_keys=True) for b in acked[i]}), 1, "one id, one event")
        self.assertEqual(len({epoch_of(i) for i in ids}), 1)
        [epoch] = {epoch_of(i) for i in ids}
        last = ids[-1]
        got = stream.events_until(last, timeout=scaled(30))
        self.assert_no_reset(got)
        self.assertEqual([gseq_of(e.id) for e in got], list(range(1, gseq_of(last) + 1)))
        seen = {e.id: json.loads(e.data) for e in got}
        for i in ids:
            self.assertEqual(seen.get(i), acked[i][0], i)
        # a key was published once: no event appears twice in the stream
        keys = [(d["p"], d["i"]) for d in seen.values() if "p" in d]
        self.assertEqual(len(keys), len(set(keys)), "every event once")
        got = self.replay_all(gw, epoch, last)
        self.assertEqual({e.id for e in got} >= set(ids), True)
        sys_stderr = __import__("sys").stderr
        sys_stderr.write("cluster test: %d acknowledged, answers %r\n" % (len(ids), statuses))


if __name__ == "__main__":
    unittest.main()
