"""
A long resume: 10,000 events published to a room, then a fresh stream with
Last-Event-ID = the id just before them receives all 10,000 exactly once and
in order (paged replay, each page fetched when the client took the previous
one), then live events. Measures the time from the request to the 10,000th
event (printed; ROOMCAST_MEASURE_FILE appends it to a file), on the same
gateway and on a second gateway, with the default client buffer (1 MiB:
pages of 256 KiB) and with a small one (64 KiB).
"""

import os
import statistics
import sys

from resume_util import StreamTest, FastStream, cli_publish, harness, pump, scaled

N = 10000
ROOM = "room-catchup"


class CatchupTest(StreamTest):
    def resume_once(self, gw, after_id, want_ids):
        expect = iter(want_ids)
        state = {"n": 0, "error": None}

        def on_event(eid, data):
            if state["error"] is None and state["n"] < len(want_ids):
                w = next(expect)
                if eid.decode() != w:
                    state["error"] = "event #%d: expected id %s, got %r" % (state["n"], w, eid)
            state["n"] += 1

        s = FastStream(gw.port, "/api/v1/events?room_id=" + ROOM, headers={"Last-Event-ID": after_id},
                       on_event=on_event)
        self._fast.append(s)

        def done():
            if state["error"] or s.eof:
                raise AssertionError(state["error"] or "the stream closed after %d events" % state["n"])
            return state["n"] >= len(want_ids)

        pump([s], done, scaled(30), "%d resumed events" % len(want_ids))
        elapsed = s.t_last - s.t_open
        # then live, with nothing in between
        live = harness.publish(gw.port, {"type": "live", "room_id": ROOM})
        pump([s], lambda: state["n"] >= len(want_ids) + 1, scaled(10), "the live event")
        self.assertIsNone(state["error"])
        self.assertEqual(s.last_id.decode(), live)
        self.assertEqual(state["n"], len(want_ids) + 1)
        s.close()
        return elapsed, live

    def run_case(self, *gw_args):
        c = self.cluster
        c.start_broker()
        gws = [c.start_gateway(*gw_args), c.start_gateway(*gw_args)]
        start = cli_publish(c, [{"type": "start", "room_id": "elsewhere"}])[0]
        ids = []
        for k in range(10):
            ids += cli_publish(c, [{"type": "message.created", "room_id": ROOM, "n": i,
                                    "text": "hello %05d from the catch-up test" % i}
                                   for i in range(k * 1000, k * 1000 + 1000)])
        times = []
        for r in range(4):
            gw = gws[r % 2]
            elapsed, live = self.resume_once(gw, start, ids)
            ids.append(live)  # the next resume replays it too
            times.append(elapsed)
        return times

    def report(self, label, times):
        line = ("resume of %d events (%s): %s s; median %.3f s = %.0f events/s"
                % (N, label, ", ".join("%.3f" % t for t in times), statistics.median(times),
                   N / statistics.median(times)))
        sys.stderr.write("\n" + line + "\n")
        path = os.environ.get("ROOMCAST_MEASURE_FILE")
        if path:
            with open(path, "a") as f:
                f.write(line + "\n")

    def test_resume_10000_default_buffer(self):
        self.report("--max-client-buffer 1 MiB", self.run_case())

    def test_resume_10000_small_buffer(self):
        self.report("--max-client-buffer 64 KiB", self.run_case("--max-client-buffer", "65536"))


if __name__ == "__main__":
    harness.main()
