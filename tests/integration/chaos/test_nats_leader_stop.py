"""
Chaos case 2b: a planned stop of the NATS node that leads the stream, the
way to take a node down for maintenance (README "More than one machine"):
lame duck mode (SIGUSR2, what `nats-server --signal ldm=PID` sends),
under load; it is started again once it has exited.

In lame duck mode nats-server 2.9 first hands the leadership of its Raft
groups (the stream's, the metadata's) to another node, then closes its
clients one by one and exits: so there is no 4-9 s election as after a
crash (test_nats_leader_kill.py). As there, the stream's leadership is first
moved until a broker is connected to the node that leads, so that the stop
also moves a broker's NATS connection to another node.

Checks: those of every case (chaos.py); the stream's new leader was in
place before the node exited; the broker on it reconnected elsewhere. The
stall is reported ("chaos:" line) like the other cases.

Topology: chaos.py. Skips (77) like the others.
"""

import signal
import sys
import time

import chaos
from chaos import Chaos, harness, report, scaled


class NatsLeaderStopTest(Chaos):
    def test_lame_duck_stream_leader_and_restart(self):
        leader, victim, moved, before = self.leader_to_break()
        got = {}

        def fault(c):
            victim.proc.signal(signal.SIGUSR2)  # lame duck mode
            c.marks["ldm"] = time.monotonic()
            got["new"] = c.wait_new_leader(leader, "the stream's leadership handed over")
            c.marks["handed_over"] = time.monotonic()
            got["alive_at_handover"] = victim.proc.alive()
            # it closes its clients over a few seconds (lame_duck_grace_period, then one a second) and exits
            harness.wait_until(lambda: not victim.proc.alive(), scaled(60), "the lame duck %s to exit" % leader,
                               interval=0.1)
            c.marks["exited"] = time.monotonic()
            victim.start(c.nats_bin)
            c.wait_nats_healthy(victim)

        figures = self.run_case("nats-leader-stop", fault)
        self.assertTrue(got["alive_at_handover"], "%s exited before another node led the stream" % leader)
        after = {b.name: b.stats(self.client)["nats"] for b in self.brokers}
        for b in moved:
            self.assertGreater(after[b.name]["reconnects"], before[b.name]["reconnects"], b.name)
            self.assertTrue(after[b.name]["connected"], after[b.name])
        report("nats-leader-stop", old=leader, new=got["new"],
               handover_s="%.1f" % (self.marks["handed_over"] - self.marks["ldm"]),
               exit_s="%.1f" % (self.marks["exited"] - self.marks["ldm"]),
               brokers_moved=",".join(b.name for b in moved), **dict(figures, **self.gateway_figures()))


if __name__ == "__main__":
    sys.exit(chaos.main())
