"""
Chaos case 2: SIGKILL the NATS node that leads the stream (STREAM.INFO's
cluster.leader) under load, restart it on its store DOWN seconds later.

Before the load, the leader is moved (STREAM.LEADER.STEPDOWN, a few times
at most) until a broker is connected to the node that leads, so that the
kill also breaks a broker's NATS connection: that broker reconnects to
another node (its own stats: disconnects and reconnects +1, relayed on the
gateways' /metrics as roomcast_broker_nats_{disconnects,reconnects}_total
with its broker="<index>" label).
Publishes to the stream stall until the two nodes left elect a leader
(nats-server 2.9.10: 4-8 s, docs/ARCHITECTURE.md "Test bed"); POSTs meanwhile
are answered 503 storage_unavailable or 504 publish_outcome_unknown and are
retried with the same keys. After the restart the node catches up (all
three replicas hold the stream's last sequence).

Topology and checks: chaos.py. Skips (77) like the others.
"""

import sys
import time

import chaos
from chaos import Chaos, STREAM, harness, report, scaled

DOWN = 6.0  # seconds the node stays dead


class NatsLeaderKillTest(Chaos):
    def test_sigkill_stream_leader_and_restart(self):
        leader, victim, moved, before = self.leader_to_break()
        got = {}

        def fault(c):
            victim.proc.kill()  # SIGKILL, reaped
            c.marks["killed"] = time.monotonic()
            got["new"] = c.wait_new_leader(leader, "a new stream leader")
            c.marks["elected"] = time.monotonic()
            time.sleep(max(0.0, DOWN - (time.monotonic() - c.marks["killed"])))
            victim.start(c.nats_bin)
            c.marks["restarted"] = time.monotonic()
            c.wait_nats_healthy(victim)

        figures = self.run_case("nats-leader-kill", fault)
        # how long the restarted node took to catch up (its replica holds the stream's last
        # sequence): reported, not asserted. It is nats-server's own work, and 2.9.10 once left a
        # restarted replica behind for over 40 s in a clean-clone run (2026-12-05) while every
        # roomcast check above and below held.
        last = harness.wait_until(lambda: self.js().stream_info(STREAM, timeout=2)["state"]["last_seq"], scaled(10),
                                  "stream info")
        t = time.monotonic()
        try:
            harness.wait_until(lambda: (self.node_state(victim) or {}).get("last_seq") == last, scaled(40),
                               "the restarted %s to hold seq %d" % (leader, last), interval=0.1)
            catchup = "%.1f" % (time.monotonic() - t)
        except AssertionError:
            catchup = "not_within_%ds" % scaled(40)
            print("chaos: warning: the restarted nats-server %s did not catch up to seq %d within %d s "
                  "(nats-server's replication, not roomcast's)" % (leader, last, scaled(40)), flush=True)
        # the brokers that were on the killed node lost their connection and made another
        after = {b.name: b.stats(self.client)["nats"] for b in self.brokers}
        for b in moved:
            self.assertGreater(after[b.name]["disconnects"], before[b.name]["disconnects"], b.name)
            self.assertGreater(after[b.name]["reconnects"], before[b.name]["reconnects"], b.name)
            self.assertTrue(after[b.name]["connected"], after[b.name])
        # and the gateways' /metrics relayed it, under each moved broker's index in their --broker-api list
        for i, g in enumerate(self.gateways):
            for b in moved:
                k = self.brokers.index(b)
                for m, f in (("roomcast_broker_nats_disconnects_total", "disconnects"),
                             ("roomcast_broker_nats_reconnects_total", "reconnects")):
                    name = '%s{broker="%d"}' % (m, k)
                    seen = self.series(i, name, since=self.marks["killed"])
                    self.assertTrue(seen and max(v for _, v in seen) > before[b.name][f],
                                    "%s /metrics never showed %s > %d after the kill: %r" % (
                                        g.name, name, before[b.name][f], seen[-5:]))
        report("nats-leader-kill", old=leader, new=got["new"],
               election_s="%.1f" % (self.marks["elected"] - self.marks["killed"]), down_s=DOWN,
               catchup_s=catchup, brokers_moved=",".join(b.name for b in moved),
               **dict(figures, **self.gateway_figures()))


if __name__ == "__main__":
    sys.exit(chaos.main())
