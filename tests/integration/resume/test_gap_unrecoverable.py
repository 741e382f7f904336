"""
A bus gap the broker's history no longer covers: the gateway cannot repair
it, so its streams get stream.reset with reason gap_unrecoverable and an id
after the hole, then go on live. Nothing is lost silently: every event the
stream does not receive lies before a reset.

The broker keeps only 20 events (--history-events 20) and the bus is as small
as in test_burst.py, so frames are dropped while the burst runs and by the
time the gateway asks for the missing range it has been evicted.
"""

import json
import os

from resume_util import StreamTest, FastStream, cli_publish_file, gseq_of, harness, pump, scaled

N_EVENTS = 20000
ROOM = "gap"


class GapUnrecoverableTest(StreamTest):
    def test_evicted_gap_gives_reset_then_live(self):
        c = self.cluster
        c.start_broker("--bus-sendbuf", "1", "--bus-frame-bytes", "4096", "--history-events", "20")
        gw = c.start_gateway("--bus-recvbuf", "1", "--max-client-buffer", str(256 * 1024 * 1024),
                             "--heartbeat-ms", "0")
        path = os.path.join(c.dir, "gap.ndjson")
        with open(path, "w") as f:
            for i in range(N_EVENTS):
                f.write('{"type":"gap","room_id":"gap","seq":%d}\n' % i)

        seen = []  # (gseq, data) in arrival order, resets included

        def on_event(eid, data):
            seen.append((gseq_of(eid), data))

        sub = FastStream(gw.port, "/api/v1/events?room_id=" + ROOM, on_event=on_event, name="sub")
        self._fast = [sub]
        sub.wait_open()
        pub = cli_publish_file(c, path, os.path.join(c.dir, "gap.ids"), scaled(60))
        try:
            rc = pub.wait(timeout=scaled(60))
        finally:
            if pub.poll() is None:
                pub.kill()
                pub.wait()
        self.assertEqual(rc, 0, "roomcast publish --ndjson failed")
        with open(os.path.join(c.dir, "gap.ids")) as f:
            last = gseq_of(f.read().split()[-1])

        # the stream ends at the last event, whether it came live or after a reset
        pump([sub], lambda: bool(seen) and seen[-1][0] >= last, scaled(30), "the last event %d" % last)

        resets = [(g, d) for g, d in seen if b'"stream.reset"' in d]
        self.assertTrue(resets, "no stream.reset although the history could not cover the gaps")
        for g, d in resets:
            self.assertEqual(json.loads(d), {"type": "stream.reset", "reason": "gap_unrecoverable"})
        # ids only grow; every event not received lies before a reset's id
        prev = 0
        for g, d in seen:
            self.assertGreaterEqual(g, prev, "ids go backwards at %d" % g)
            if b'"stream.reset"' not in d:
                self.assertGreater(g, prev, "duplicate %d" % g)
                if g != prev + 1:
                    self.fail("events %d..%d missing without a stream.reset" % (prev + 1, g - 1))
            prev = g
        self.assertEqual(prev, last)
        m = harness.get_metrics(gw.port)
        self.assertGreater(m.get('roomcast_stream_resets_total{reason="gap_unrecoverable"}', 0), 0)
        self.assertGreater(m.get("roomcast_gaps_detected_total", 0), 0)

if __name__ == "__main__":
    harness.main()
