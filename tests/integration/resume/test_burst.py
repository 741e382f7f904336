"""
Burst: 100,000 events published as fast as the broker api takes them reach
20 subscribers of one room exactly once and in order, although the bus is
configured so small that nng (and the gateway's bus inbox) drop frames: the
gateway must detect every gap and repair it by replay. The test proves that
repair happened (gaps and repaired events counted in /metrics), not that drops
were avoided.

Bus settings that make drops happen reliably (found by experiment):
  broker  --bus-sendbuf 1 --bus-frame-bytes 4096  (many small frames, a
          per-subscriber queue of one frame),
  gateway --bus-recvbuf 1 (nng's SUB queue and the loop's inbox hold one frame:
          whatever arrives while the loop is busy fanning out is dropped).
With these, a run sees ~35-95 gaps and ~94-98% of the events come by repair.
The gateway's --bus-recvbuf 1 is what makes it reliable: the broker's
--bus-sendbuf 1 alone (1 MiB frames) gave a single gap in a run (the kernel's
socket buffers absorb the burst), with --bus-frame-bytes 4096 about 70.

Prints the delivery rate and the repair counters on stderr
(ROOMCAST_MEASURE_FILE: also appended to that file).
"""

import os
import sys
import time

from resume_util import StreamTest, FastStream, epoch_of, gseq_of, harness, publish_file_while_reading, scaled

N_EVENTS = int(os.environ.get("ROOMCAST_BURST_EVENTS", "100000"))
N_SUBSCRIBERS = 20
ROOM = "burst"


class Checker:
    """Checks one subscriber's events on the fly (constant memory)."""

    def __init__(self, name):
        self.name = name
        self.n = 0
        self.last_gseq = 0
        self.epoch = None
        self.error = None

    def __call__(self, eid, data):
        if self.error is not None:
            return
        want = b'{"type":"burst","room_id":"burst","seq":%d}' % self.n
        if data != want:
            self.error = "event #%d: expected %r, got id %r data %r" % (self.n, want, eid, data[:200])
            return
        g = gseq_of(eid)
        e = epoch_of(eid)
        if self.epoch is None:
            self.epoch = e
        elif e != self.epoch:
            self.error = "event #%d: epoch changed %s -> %s" % (self.n, self.epoch, e)
            return
        if g <= self.last_gseq:
            self.error = "event #%d: id %r not after gseq %d" % (self.n, eid, self.last_gseq)
            return
        self.last_gseq = g
        self.n += 1


class BurstTest(StreamTest):
    def test_burst_with_dropped_bus_frames_is_repaired(self):
        c = self.cluster
        c.start_broker("--bus-sendbuf", "1", "--bus-frame-bytes", "4096", "--history-events", str(2 * N_EVENTS))
        # a large client buffer: subscribers are slow Python readers, this test is about the bus
        gw = c.start_gateway("--bus-recvbuf", "1", "--max-client-buffer", str(256 * 1024 * 1024),
                             "--heartbeat-ms", "0")

        path = os.path.join(c.dir, "burst.ndjson")
        with open(path, "w") as f:
            for i in range(N_EVENTS):
                f.write('{"type":"burst","room_id":"burst","seq":%d}\n' % i)

        checkers = [Checker("sub%d" % i) for i in range(N_SUBSCRIBERS)]
        subs = [FastStream(gw.port, "/api/v1/events?room_id=" + ROOM, on_event=checkers[i], name="sub%d" % i)
                for i in range(N_SUBSCRIBERS)]
        self._fast = subs
        for s in subs:
            s.wait_open()

        t0 = time.monotonic()
        rc = publish_file_while_reading(c, path, subs, checkers, lambda k: k.n >= N_EVENTS, scaled(45),
                                        "%d events on %d subscribers" % (N_EVENTS, N_SUBSCRIBERS))
        with open(os.path.join(c.dir, "burst.ids.err"), "rb") as f:
            err = f.read()
        self.assertEqual(rc, 0, "roomcast publish --ndjson failed: %r" % err)
        with open(os.path.join(c.dir, "burst.ids")) as f:
            ids = f.read().split()
        self.assertEqual(len(ids), N_EVENTS, "the CLI printed one id per event")

        # nothing more (no duplicate after the last one, no reset) arrives afterwards
        time.sleep(0.3)
        for s in subs:
            s.read_some(64)
        for k, s in zip(checkers, subs):
            self.assertIsNone(k.error, k.name)
            self.assertEqual(k.n, N_EVENTS, k.name)
            self.assertEqual(s.count, N_EVENTS, "%s: events after the last one" % s.name)
            self.assertEqual(k.last_gseq, gseq_of(ids[-1]), k.name)
            self.assertEqual(s.comments, [], s.name)

        m = harness.get_metrics(gw.port)
        gaps = m.get("roomcast_gaps_detected_total", 0)
        repaired = m.get("roomcast_events_repaired_total", 0)
        resets = sum(v for k, v in m.items() if k.startswith("roomcast_stream_resets_total"))
        slow = m.get("roomcast_slow_client_closes_total", 0)

        first = min(s.t_first for s in subs)
        last = max(s.t_last for s in subs)
        per_sub = [N_EVENTS / (s.t_last - t0) for s in subs]
        report = ("burst: %d events x %d subscribers in %.2fs (publish start -> last delivery); "
                  "per subscriber %.0f-%.0f events/s (mean %.0f); total %.0f deliveries/s; "
                  "first delivery after %.3fs; bus frames received %d, gaps detected %d, events repaired %d, "
                  "replays %d, resets %d, slow closes %d"
                  % (N_EVENTS, N_SUBSCRIBERS, last - t0, min(per_sub), max(per_sub), sum(per_sub) / len(per_sub),
                     N_EVENTS * N_SUBSCRIBERS / (last - t0), first - t0, m.get("roomcast_bus_frames_received_total", 0),
                     gaps, repaired, m.get("roomcast_replays_total", 0), resets, slow))
        sys.stderr.write("\n" + report + "\n")
        if os.environ.get("ROOMCAST_MEASURE_FILE"):
            with open(os.environ["ROOMCAST_MEASURE_FILE"], "a") as f:
                f.write(report + "\n")
        self.assertEqual(resets, 0, "no stream.reset: every gap was repaired")
        self.assertGreater(gaps, 0, "the bus settings must make nng drop frames (repair not exercised)")
        self.assertGreater(repaired, 0, "gaps must be repaired by replay")

if __name__ == "__main__":
    harness.main()
