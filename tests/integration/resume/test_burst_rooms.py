"""
Burst over several rooms: 40,000 events published as fast as the broker api
takes them, round-robin over 5 rooms plus global events, with the bus made
so small that nng and the gateway's inbox drop messages (the settings of
test_burst.py). Each flush then reaches the gateway as one frame per room and
an index, and drops hit single rooms' frames as well as indexes. Streams of
one room, of two rooms, of three rooms (one of them with no other stream on
this gateway), and a firehose each receive exactly their rooms' events plus
the global ones, in id order, once, with no stream.reset; the gateway
reports that it repaired gaps. Rooms 3 and 4 have no stream except through
the firehose and the three-room stream, so room-topic subscription, merging
and repair by replay (with a rooms list) are all on the path.
"""

import os
import sys
import time

from resume_util import StreamTest, FastStream, gseq_of, harness, publish_file_while_reading, scaled

N_EVENTS = int(os.environ.get("ROOMCAST_BURST_ROOMS_EVENTS", "40000"))
ROOMS = ["r0", "r1", "r2", "r3", "r4"]
GLOBAL_EVERY = 7  # every 7th event has no room


def event_room(i):
    return None if i % GLOBAL_EVERY == 0 else ROOMS[i % len(ROOMS)]


class Checker:
    """One stream's events against what it must get: the seq numbers of its rooms, in order."""

    def __init__(self, name, rooms):
        self.name = name
        self.want = [i for i in range(N_EVENTS) if event_room(i) is None or rooms is None or event_room(i) in rooms]
        self.n = 0
        self.last_gseq = 0
        self.error = None

    def __call__(self, eid, data):
        if self.error is not None:
            return
        if self.n >= len(self.want):
            self.error = "event beyond the last: %r %r" % (eid, data[:120])
            return
        i = self.want[self.n]
        room = event_room(i)
        want = (b'{"type":"b","room_id":"%s","seq":%d}' % (room.encode(), i) if room
                else b'{"type":"g","seq":%d}' % i)
        if data != want:
            self.error = "event #%d: expected %r, got id %r data %r" % (self.n, want, eid, data[:200])
            return
        g = gseq_of(eid)
        if g <= self.last_gseq:
            self.error = "event #%d: id %r not after gseq %d" % (self.n, eid, self.last_gseq)
            return
        self.last_gseq = g
        self.n += 1

    def done(self):
        return self.n >= len(self.want)


class BurstRoomsTest(StreamTest):
    def test_heavy_drops(self):
        """A queue of one message: nearly everything comes by repair."""
        self.run_burst(1)

    def test_light_drops(self):
        """
        The broker's default queue, the gateway's of 8 messages: many flushes
        arrive whole and are merged live, the lost ones are repaired.
        """
        self.run_burst(8, sendbuf=None)

    def run_burst(self, recvbuf, sendbuf=1):
        c = self.cluster
        c.start_broker(*(["--bus-sendbuf", str(sendbuf)] if sendbuf else []), "--bus-frame-bytes", "4096",
                       "--history-events", str(2 * N_EVENTS))
        gw = c.start_gateway("--bus-recvbuf", str(recvbuf), "--max-client-buffer", str(256 * 1024 * 1024),
                             "--heartbeat-ms", "0")

        path = os.path.join(c.dir, "burst.ndjson")
        with open(path, "w") as f:
            for i in range(N_EVENTS):
                room = event_room(i)
                f.write('{"type":"b","room_id":"%s","seq":%d}\n' % (room, i) if room
                        else '{"type":"g","seq":%d}\n' % i)

        plans = [("r0", {"r0"}), ("r1", {"r1"}), ("r0+r1", {"r0", "r1"}), ("r2+r3+r4", {"r2", "r3", "r4"}),
                 ("firehose", None)]
        checkers, subs = [], []
        for name, rooms in plans:
            k = Checker(name, rooms)
            path_q = "/api/v1/events" + ("" if rooms is None else "?room_id=" + ",".join(sorted(rooms)))
            checkers.append(k)
            subs.append(FastStream(gw.port, path_q, on_event=k, name=name))
        self._fast = subs
        for s in subs:
            s.wait_open()

        t0 = time.monotonic()
        rc = publish_file_while_reading(
            c, path, subs, checkers, lambda k: k.done(), scaled(60), "%d events over %d rooms" % (N_EVENTS, len(ROOMS)),
            status=lambda: ", ".join("%s %d/%d" % (k.name, k.n, len(k.want)) for k in checkers))
        self.assertEqual(rc, 0, "roomcast publish --ndjson failed")

        # nothing more arrives: no duplicate after the last one, no reset
        time.sleep(0.3)
        for s in subs:
            s.read_some(64)
        for k, s in zip(checkers, subs):
            self.assertIsNone(k.error, k.name)
            self.assertEqual(s.count, len(k.want), "%s: events after the last one" % s.name)

        m = harness.get_metrics(gw.port)
        gaps = m.get("roomcast_gaps_detected_total", 0)
        repaired = m.get("roomcast_events_repaired_total", 0)
        resets = sum(v for k, v in m.items() if k.startswith("roomcast_stream_resets_total"))
        report = ("burst over rooms, --bus-recvbuf %d: %d events in %.2fs; bus frames %d, events received %d, "
                  "gaps %d, events repaired %d, replays %d, resets %d"
                  % (recvbuf, N_EVENTS, time.monotonic() - t0, m.get("roomcast_bus_frames_received_total", 0),
                     m.get("roomcast_bus_events_received_total", 0), gaps, repaired,
                     m.get("roomcast_replays_total", 0), resets))
        sys.stderr.write("\n" + report + "\n")
        self.assertEqual(resets, 0)
        self.assertGreater(gaps, 0, "the bus settings are meant to make nng drop messages")
        self.assertGreater(repaired, 0)
        if recvbuf > 1:
            # a repair replays up to the broker's newest event, so during a burst most events come by
            # replay; with a queue of 8 thousands still come live, merged from room frames
            self.assertGreater(m.get("roomcast_bus_events_received_total", 0), N_EVENTS // 50)


if __name__ == "__main__":
    harness.main()
