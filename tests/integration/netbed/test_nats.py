"""
The test bed proven with NATS alone: a 3-node JetStream cluster of Debian's
nats-server, one node per host (n1, n2, n3), cluster routes on the bed's
198.18 addresses, and a fourth host (client) the test talks from. An R3
stream with allow_direct; publishes carry a Nats-Msg-Id and are retried with
the same id until acknowledged, so each is stored once.

Each phase publishes at a steady rate through a node the fault does not
touch and records the longest gap between two acknowledgements (the stall):

1. SIGKILL the stream leader: a new leader is elected (time recorded),
   publishing continues, every acknowledged message is readable; the killed
   node restarts on its store and catches up (time recorded).
2. Cut a follower's host off (link down) for a few seconds and heal it:
   publishing goes on with the same leader, the cut node answers nothing;
   after the heal all three replicas hold the same messages (time to
   converge recorded).
3. 10 % loss on the leader's input for a few seconds: publishes are still
   acknowledged (latencies recorded); nothing acknowledged is lost.
4. Only with ROOMCAST_NETBED_CUT_LEADER=1: cut the leader's host off until
   the others elect a new leader, heal, and require the same convergence.
   nats-server 2.9.10 fails this in some runs: the former leader's replica
   misses the messages committed while it was cut off and stores later ones
   at shifted sequences (seen: 224 messages against 232, seq 210 holding the
   message acknowledged at 218; 5 runs of 18 here), so a direct get
   answered by that replica returns another message than the one
   acknowledged at that sequence.

After every phase: the stream holds exactly the acknowledged messages, each
once, at the sequence its PubAck gave, with its data and Nats-Msg-Id.
Measurements are printed as lines starting with "netbed:". Skips (77) when not
root, without `ip netns`, nft/iptables or nats-server.
"""

import json
import os
import shutil
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import nats_client  # noqa: E402
import netbed  # noqa: E402
from nats_client import JSAPIError, NatsError  # noqa: E402

TIME_SCALE = float(os.environ.get("ROOMCAST_TEST_TIME_SCALE") or 1.0)
STREAM = "CHAOS"
CLIENT_PORT, ROUTE_PORT, HTTP_PORT = 4222, 6222, 8222
RATE = 50                      # publishes per second during a phase
REQUEST_TIMEOUT = 0.5          # one publish attempt; a retry uses the same Nats-Msg-Id
PUBLISH_DEADLINE = 30.0        # one message, all attempts
FAULT_SECONDS = 4.0            # how long a cut or a lossy link lasts


def scaled(seconds):
    return seconds * TIME_SCALE


def report(what, **figures):
    """One measurement line in the test's output."""
    print("netbed: %s %s" % (what, " ".join("%s=%s" % kv for kv in figures.items())), flush=True)


def wait_until(pred, timeout, what, interval=0.05):
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, NatsError, TimeoutError, ValueError) as e:
            last = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last error: %r)" % (timeout, what, last))
        time.sleep(interval)


def http_get(host, addr, port, path, timeout=2.0):
    """GET path from addr:port, from inside host; returns (status, body bytes). HTTP/1.0: read to EOF."""
    s = host.connect(addr, port, timeout)
    try:
        s.sendall(("GET %s HTTP/1.0\r\nHost: %s\r\n\r\n" % (path, addr)).encode())
        data = bytearray()
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    finally:
        s.close()
    head, _, body = bytes(data).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


class Node:
    """One nats-server on its own host, with its own store dir."""

    def __init__(self, bed, name):
        self.name = name
        self.host = bed.add_host(name)
        self.store = os.path.join(bed.logdir, "store-" + name)
        self.conf = os.path.join(bed.logdir, name + ".conf")
        self.proc = None

    def write_conf(self, peers):
        routes = ", ".join('"nats://%s:%d"' % (p.host.addr, ROUTE_PORT) for p in peers if p is not self)
        with open(self.conf, "w") as f:
            f.write('server_name: "%s"\n'
                    'listen: "%s:%d"\n'
                    'http: "%s:%d"\n'
                    'jetstream { store_dir: "%s" }\n'
                    'cluster {\n  name: "rcnb"\n  listen: "%s:%d"\n  routes: [%s]\n}\n' % (
                        self.name, self.host.addr, CLIENT_PORT, self.host.addr, HTTP_PORT, self.store,
                        self.host.addr, ROUTE_PORT, routes))

    def start(self, nats_bin):
        # ROOMCAST_TEST_NATS_DEBUG=1: nats-server's debug log (its Raft elections) in the kept logs
        debug = ["-D"] if os.environ.get("ROOMCAST_TEST_NATS_DEBUG") else []
        self.proc = self.host.spawn(self.name, [nats_bin, "-c", self.conf] + debug)


class Publisher:
    """
    Publishes numbered messages and keeps what was acknowledged; talks to one
    node at a time (from the client host) and moves to another when its
    connection breaks. avoid: node names not to connect to (the one a
    phase is about to break).
    """

    def __init__(self, test):
        self.t = test  # the test class: its nodes and client host
        self.conn = None
        self.js = None
        self.node = None
        self.acked = {}        # msg_id -> seq
        self.data = {}         # msg_id -> payload
        self.next = 0
        self.retries = 0
        self.duplicates = 0

    def connect(self, avoid=()):
        self.close()
        errors = []
        for n in self.t.nodes:
            if n.name in avoid or not n.proc or not n.proc.alive():
                continue
            try:
                sock = self.t.client.connect(n.host.addr, CLIENT_PORT, timeout=2)
                self.conn = nats_client.Conn(sock, timeout=2)
            except (OSError, NatsError, TimeoutError) as e:
                errors.append("%s: %r" % (n.name, e))
                continue
            self.js = nats_client.JetStream(self.conn, timeout=REQUEST_TIMEOUT)
            self.node = n.name
            return
        raise AssertionError("no node to connect to (avoiding %s): %s" % (sorted(avoid), errors))

    def close(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = self.js = self.node = None

    def publish_one(self, avoid=()):
        """Publishes the next message, retrying with its Nats-Msg-Id until acknowledged; returns the ack time."""
        msg_id = "m%06d" % self.next
        payload = ("event %d %s" % (self.next, "x" * (self.next % 50))).encode()
        self.next += 1
        deadline = time.monotonic() + scaled(PUBLISH_DEADLINE)
        last = None
        while time.monotonic() < deadline:
            try:
                if self.conn is None or self.conn.closed:
                    self.connect(avoid)
                ack = self.js.publish("chaos.r%d" % (self.next % 4), payload, msg_id=msg_id)
            except (NatsError, TimeoutError, OSError, AssertionError) as e:
                # JSAPIError too: e.g. 503 "JetStream cluster stream not available" while electing
                last = e
                self.retries += 1
                if self.conn is not None and self.conn.closed:
                    self.close()
                time.sleep(0.02)
                continue
            if ack["stream"] != STREAM:
                raise AssertionError("PubAck from stream %r, not %s" % (ack["stream"], STREAM))
            if ack.get("duplicate"):
                self.duplicates += 1
            self.acked[msg_id] = ack["seq"]
            self.data[msg_id] = payload
            return time.monotonic()
        raise AssertionError("%s not acknowledged within %.0fs (last error: %r)" % (msg_id, PUBLISH_DEADLINE, last))

    def run(self, seconds, avoid=(), tick=None, until=None):
        """
        Publishes at RATE for `seconds` (then until until() is true, bounded by
        PUBLISH_DEADLINE more); tick(now) runs between publishes. Returns the ack times.
        """
        start = time.monotonic()
        end = start + seconds
        hard_end = end + scaled(PUBLISH_DEADLINE)
        acks = []
        i = 0
        while True:
            now = time.monotonic()
            if now >= end and (until is None or until()):
                break
            if now >= hard_end:
                raise AssertionError("the phase's condition did not become true within %.0fs" % (hard_end - start))
            due = start + i / RATE
            if due > now:
                time.sleep(due - now)
            acks.append(self.publish_one(avoid))
            i += 1
            if tick:
                tick(time.monotonic())
        return acks


def longest_gap(acks, since):
    """The longest time without an acknowledgement from `since` on (s)."""
    prev, gap = since, 0.0
    for t in acks:
        if t < since:
            continue
        gap = max(gap, t - prev)
        prev = t
    return gap


class NatsBedTest(unittest.TestCase):
    """The phases run in order on one cluster (setUpClass), named so that unittest sorts them so."""

    @classmethod
    def setUpClass(cls):
        cls.nats_bin = shutil.which("nats-server")
        cls.bed = netbed.Bed()
        try:
            cls._build()
        except BaseException:
            cls._dump_logs()
            cls.bed.close()
            raise

    @classmethod
    def _build(cls):
        bed = cls.bed
        if bed.stale_removed:
            print("netbed: removed a dead run's namespaces: %s" % " ".join(bed.stale_removed), flush=True)
        cls.nodes = [Node(bed, "n%d" % i) for i in (1, 2, 3)]
        cls.client = bed.add_host("client")
        for n in cls.nodes:
            n.write_conf(cls.nodes)
        t0 = time.monotonic()
        for n in cls.nodes:
            n.start(cls.nats_bin)
        for n in cls.nodes:
            cls.wait_healthy(n)
        cls.pub = Publisher(cls)
        cls.pub.connect()
        config = {"name": STREAM, "subjects": ["chaos.>"], "num_replicas": 3, "storage": "file",
                  "allow_direct": True, "duplicate_window": 120 * 10**9}

        def create():
            try:
                return cls.pub.js.stream_create(config, timeout=2)
            except JSAPIError as e:
                if e.err_code == 10058:  # already in use: an earlier attempt timed out after creating it
                    return cls.pub.js.stream_info(STREAM, timeout=2)
                raise
        info = wait_until(create, scaled(20), "the R3 stream to be created")
        wait_until(lambda: cls.leader(), scaled(20), "a stream leader")
        report("cluster up", hosts=" ".join("%s=%s" % (n.name, n.host.addr) for n in cls.nodes),
               client=cls.client.addr, seconds="%.2f" % (time.monotonic() - t0),
               leader=info.get("cluster", {}).get("leader"))

    @classmethod
    def tearDownClass(cls):
        cls.pub.close()
        cls.bed.close()

    @classmethod
    def _dump_logs(cls):
        sys.stderr.write("\n===== process logs (%s) =====\n%s\n===== end =====\n" % (cls.bed.logdir, cls.bed.logs()))

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            if len(result.failures) + len(result.errors) > before or os.environ.get("ROOMCAST_TEST_SHOW_LOGS"):
                self._dump_logs()

    # -- cluster views --

    @classmethod
    def wait_healthy(cls, node):
        def healthy():
            if not node.proc.alive():
                raise AssertionError("%s exited with %s:\n%s" % (node.name, node.proc.popen.poll(), node.proc.log()))
            return http_get(cls.client, node.host.addr, HTTP_PORT, "/healthz")[0] == 200
        wait_until(healthy, scaled(20), "%s /healthz 200" % node.name)

    @classmethod
    def leader(cls):
        """The stream leader's node name, as the node the publisher talks to sees it (None while electing)."""
        try:
            info = cls.pub.js.stream_info(STREAM, timeout=1)
        except (NatsError, TimeoutError):
            return None
        return info.get("cluster", {}).get("leader")

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def stream_state(self, node):
        """The stream's state in node's own replica (its /jsz), or None when it has none or does not answer."""
        try:
            status, body = http_get(self.client, node.host.addr, HTTP_PORT, "/jsz?accounts=true&streams=true")
        except OSError:
            return None
        if status != 200:
            return None
        for acc in json.loads(body).get("account_details") or []:
            for s in acc.get("stream_detail") or []:
                if s["name"] == STREAM:
                    return s["state"]
        return None

    def converged(self):
        """True when every node's replica holds exactly the acknowledged messages (same first and last seq)."""
        want = len(self.pub.acked)
        self.last_states = {n.name: self.stream_state(n) for n in self.nodes}
        for st in self.last_states.values():
            if st is None or st["messages"] != want or st["last_seq"] != want or st["first_seq"] != 1:
                return False
        return True

    def wait_converged(self, what):
        """Waits (bounded) until converged(); the failure names each node's state."""
        self.last_states = {}
        try:
            wait_until(self.converged, scaled(40), what, interval=0.1)
        except AssertionError as e:
            states = {k: v and {f: v[f] for f in ("messages", "first_seq", "last_seq")}
                      for k, v in self.last_states.items()}
            raise AssertionError("%s; acknowledged %d; the nodes' replicas: %s; %s" % (
                e, len(self.pub.acked), states, self.replica_differences()))

    def replica_differences(self):
        """
        For a failure message: where each node's own replica (direct get on a
        connection to that node: its replica answers first) differs from
        what was acknowledged.
        """
        by_seq = {seq: msg_id for msg_id, seq in self.pub.acked.items()}
        out = []
        for n in self.nodes:
            try:
                conn = nats_client.Conn(self.client.connect(n.host.addr, CLIENT_PORT, timeout=2), timeout=2)
            except (OSError, NatsError, TimeoutError) as e:
                out.append("%s: %r" % (n.name, e))
                continue
            js = nats_client.JetStream(conn, timeout=2)
            diffs = []
            try:
                for seq in sorted(by_seq):
                    m = js.direct_get(STREAM, seq)
                    got = m and m["headers"].get("Nats-Msg-Id")
                    if got != by_seq[seq]:
                        diffs.append("seq %d: %s, acknowledged %s" % (seq, got, by_seq[seq]))
                        if len(diffs) >= 5:
                            break
            except (NatsError, TimeoutError) as e:
                diffs.append(repr(e))
            finally:
                conn.close()
            out.append("%s: %s" % (n.name, "; ".join(diffs) or "as acknowledged"))
        return "direct get per node: " + " | ".join(out)

    # -- checks --

    def assertNothingLost(self):
        """
        The stream holds exactly the acknowledged messages: sequences 1..N,
        each at the seq its PubAck gave, with its data and Nats-Msg-Id (read
        by the leader, STREAM.MSG.GET).
        """
        pub = self.pub
        n = len(pub.acked)
        self.assertEqual(sorted(pub.acked.values()), list(range(1, n + 1)),
                         "acknowledged sequences are not 1..%d, each once" % n)
        info = wait_until(lambda: pub.js.stream_info(STREAM, timeout=2), scaled(10), "stream info")
        self.assertEqual(info["state"]["messages"], n, info["state"])
        self.assertEqual(info["state"]["last_seq"], n, info["state"])
        for msg_id, seq in sorted(pub.acked.items(), key=lambda kv: kv[1]):
            m = wait_until(lambda: pub.js.msg_get(STREAM, seq, timeout=2), scaled(10), "message %d" % seq)
            self.assertEqual(m["headers"].get("Nats-Msg-Id"), msg_id, m)
            self.assertEqual(m["data"], pub.data[msg_id], m)
        # and by direct get, from the replica of the node the publisher talks to
        by_seq = {seq: msg_id for msg_id, seq in pub.acked.items()}
        for seq in (1, n // 2 or 1, n):
            m = wait_until(lambda: pub.js.direct_get(STREAM, seq, timeout=2), scaled(10), "direct get %d" % seq)
            self.assertEqual((m["seq"], m["headers"].get("Nats-Msg-Id")), (seq, by_seq[seq]), m)

    # -- the phases --

    def test_0_publish(self):
        self.pub.run(2.0)
        self.assertNothingLost()
        report("steady", acked=len(self.pub.acked), retries=self.pub.retries)

    def test_1_kill_leader(self):
        retries = self.pub.retries
        old = wait_until(self.leader, scaled(10), "a stream leader")
        victim = self.node(old)
        self.pub.connect(avoid={old})
        self.pub.run(0.5, avoid={old})
        before = len(self.pub.acked)
        t_kill = time.monotonic()
        victim.proc.kill()  # SIGKILL, reaped
        elected = {}

        def tick(now):
            if "t" not in elected and now - elected.get("polled", 0) >= 0.1:
                elected["polled"] = now
                new = self.leader()
                if new and new != old:
                    elected["t"], elected["name"] = now, new

        acks = self.pub.run(FAULT_SECONDS, avoid={old}, tick=tick, until=lambda: "t" in elected)
        stall = longest_gap(acks, t_kill)
        # publishing goes on with the two that are left
        after = len(self.pub.acked)
        self.pub.run(1.0, avoid={old})
        self.assertGreater(len(self.pub.acked), after, "no publish acknowledged after the election")
        self.assertGreater(after, before, "no publish acknowledged after the kill")
        self.assertNothingLost()
        # restart on the same store: it catches up with what it missed
        t_restart = time.monotonic()
        victim.start(self.nats_bin)
        self.wait_healthy(victim)
        self.wait_converged("the restarted %s to catch up" % old)
        report("kill-leader", old=old, new=elected["name"], election_s="%.2f" % (elected["t"] - t_kill),
               stall_s="%.2f" % stall, catchup_s="%.2f" % (time.monotonic() - t_restart),
               acked=len(self.pub.acked), retries=self.pub.retries - retries, duplicates=self.pub.duplicates)

    def test_2_cut_follower(self):
        retries = self.pub.retries
        leader = wait_until(self.leader, scaled(10), "a stream leader")
        victim = next(n for n in self.nodes if n.name != leader)
        self.pub.connect(avoid={victim.name})
        self.pub.run(0.5, avoid={victim.name})
        at_cut = len(self.pub.acked)
        t_cut = time.monotonic()
        victim.host.cut()
        try:
            acks = self.pub.run(FAULT_SECONDS, avoid={victim.name})
            # the cut node's replica stays where it was: nothing reaches it
            state = self.stream_state(victim)
            self.assertIsNone(state, "the cut-off %s answered: %s" % (victim.name, state))
        finally:
            victim.host.heal()
        t_heal = time.monotonic()
        stall = longest_gap(acks, t_cut)
        self.assertEqual(self.leader(), leader, "the leader changed though only a follower was cut off")
        self.wait_converged("all three replicas to converge after the heal")
        converge = time.monotonic() - t_heal
        self.assertNothingLost()
        report("cut-follower", node=victim.name, leader=leader, cut_s="%.2f" % (t_heal - t_cut),
               stall_s="%.2f" % stall, missed=len(self.pub.acked) - at_cut, converge_s="%.2f" % converge,
               acked=len(self.pub.acked), retries=self.pub.retries - retries)

    def test_3_lossy_leader(self):
        retries = self.pub.retries
        old = wait_until(self.leader, scaled(10), "a stream leader")
        victim = self.node(old)
        self.pub.connect(avoid={old})
        t0 = time.monotonic()
        before = len(self.pub.acked)
        victim.host.set_loss(10)
        try:
            latencies = []
            start = time.monotonic()
            acks = []
            while time.monotonic() - start < FAULT_SECONDS:
                t = time.monotonic()
                acks.append(self.pub.publish_one(avoid={old}))
                latencies.append(acks[-1] - t)
                due = start + len(acks) / RATE
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
        finally:
            victim.host.clear_loss()
        stall = longest_gap(acks, t0)
        latencies.sort()
        self.assertGreater(len(self.pub.acked) - before, 0)
        self.wait_converged("all three replicas to converge after the loss")
        self.assertNothingLost()
        report("lossy-leader", node=old, loss_pct=10, seconds=FAULT_SECONDS, acked=len(acks),
               p50_ms="%.1f" % (latencies[len(latencies) // 2] * 1000),
               p99_ms="%.1f" % (latencies[min(len(latencies) - 1, len(latencies) * 99 // 100)] * 1000),
               stall_s="%.2f" % stall, retries=self.pub.retries - retries, leader_after=self.leader())


    @unittest.skipUnless(os.environ.get("ROOMCAST_NETBED_CUT_LEADER"),
                         "set ROOMCAST_NETBED_CUT_LEADER=1: with nats-server 2.9.10 the cut-off leader's "
                         "replica diverges in about 1 run of 4 (docs/ARCHITECTURE.md, Test bed)")
    def test_4_cut_leader(self):
        retries = self.pub.retries
        old = wait_until(self.leader, scaled(10), "a stream leader")
        victim = self.node(old)
        self.pub.connect(avoid={old})
        self.pub.run(0.5, avoid={old})
        t_cut = time.monotonic()
        print("netbed: cutting off %s, the stream leader, at seq %d" % (old, len(self.pub.acked)), flush=True)
        victim.host.cut()
        elected = {}

        def tick(now):
            if "t" not in elected and now - elected.get("polled", 0) >= 0.1:
                elected["polled"] = now
                new = self.leader()
                if new and new != old:
                    elected["t"], elected["name"] = now, new

        try:
            acks = self.pub.run(FAULT_SECONDS, avoid={old}, tick=tick, until=lambda: "t" in elected)
        finally:
            victim.host.heal()
        t_heal = time.monotonic()
        stall = longest_gap(acks, t_cut)
        self.pub.run(0.5, avoid={old})
        self.wait_converged("all three replicas to converge after the heal")
        converge = time.monotonic() - t_heal
        self.assertNothingLost()
        report("cut-leader", old=old, new=elected["name"], cut_s="%.2f" % (t_heal - t_cut),
               election_s="%.2f" % (elected["t"] - t_cut), stall_s="%.2f" % stall,
               converge_s="%.2f" % converge, acked=len(self.pub.acked), retries=self.pub.retries - retries)


def main():
    try:
        netbed.require()
        if shutil.which("nats-server") is None:
            raise netbed.Skip("nats-server is not installed (Debian package nats-server; scripts/install-deps)")
    except netbed.Skip as e:
        print("SKIP: %s" % e, flush=True)
        return netbed.SKIP
    prog = unittest.main(verbosity=2, exit=False)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
