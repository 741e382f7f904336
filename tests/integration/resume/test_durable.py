"""
Durable history (broker --data-dir): a broker killed with SIGKILL and started
again on the same directory keeps its epoch and every event it acknowledged;
streams on the gateways resume across it with no stream.reset, gap or
duplicate. Torn tails are cut, corruption in the middle refuses to start
(unless --repair), a full disk answers 503 storage_unavailable and recovers,
retention drops whole old segments and holds across a restart.
"""

import glob
import json
import os
import subprocess
import threading
import time

from resume_util import epoch_of, gseq_of, harness, scaled


def ev(i, room="room-d", **kw):
    d = {"type": "d", "room_id": room, "i": i}
    d.update(kw)
    return d


def segments(data):
    return sorted(glob.glob(os.path.join(data, "*.seg")))


class DurableTest(harness.GatewayTest):
    def data_dir(self):
        return os.path.join(self.cluster.dir, "data")

    def start(self, data, *extra, old=None):
        c = self.cluster
        if old is None:
            return c.start_broker("--data-dir", data, *extra)
        return c.start_broker("--data-dir", data, *extra, bus=old.bus, api=old.api)

    def replay_all(self, gw, epoch, last_id):
        """Every event of the history from gseq 1, through a stream resumed at <epoch>-0."""
        s = self.sse(gw, "/api/v1/events", headers={"Last-Event-ID": "%s-0" % epoch})
        got = s.events_until(last_id, timeout=scaled(20))
        s.close()
        return got

    def broker_stats(self):
        r = self.cluster.cli("stats")
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    # -- 1. SIGKILL under load, five times --

    def test_sigkill_under_load_loses_nothing_acknowledged(self):
        c = self.cluster
        data = self.data_dir()
        c.start_broker("--data-dir", data)
        gws = [c.start_gateway(), c.start_gateway()]
        streams = [self.sse(gw, "/api/v1/events") for gw in gws]
        acked = {}
        lock = threading.Lock()
        stop = threading.Event()
        errors = []

        def publisher(k):
            i = 0
            while not stop.is_set():
                i += 1
                body = ev(i, room="room-%d" % (k % 2), p=k)
                try:
                    r = harness.post_json(gws[k % 2].port, body)
                except OSError:
                    time.sleep(0.01)
                    continue
                if r.status == 201:
                    with lock:
                        acked[r.json()["id"]] = body
                elif r.status not in (503, 504):
                    errors.append((r.status, r.body[:200]))
                time.sleep(0.004)

        threads = [threading.Thread(target=publisher, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        try:
            epochs = set()
            for rnd in range(5):
                n0 = len(acked)
                harness.wait_until(lambda: len(acked) >= n0 + 30, scaled(20), "30 more publishes acknowledged")
                old = c.broker
                old.proc.kill()
                c.start_broker("--data-dir", data, bus=old.bus, api=old.api)
            n0 = len(acked)
            harness.wait_until(lambda: len(acked) >= n0 + 30, scaled(20), "publishes after the last restart")
        finally:
            stop.set()
            for t in threads:
                t.join(scaled(20))
        self.assertEqual(errors, [])
        with lock:
            ids = sorted(acked, key=gseq_of)
        epochs = {epoch_of(i) for i in ids}
        self.assertEqual(len(epochs), 1, "one epoch across five SIGKILLs")
        [epoch] = epochs
        last = ids[-1]
        for s in streams:
            got = s.events_until(last, timeout=scaled(30))
            for e in got:
                self.assertNotEqual(json.loads(e.data).get("type"), "stream.reset", e.data)
            self.assertEqual([gseq_of(e.id) for e in got], list(range(1, gseq_of(last) + 1)), "no gap, no dup")
            seen = {e.id: json.loads(e.data) for e in got}
            for i in ids:
                self.assertEqual(seen.get(i), acked[i], i)
        # and from the history itself, after all the restarts
        got = self.replay_all(gws[0], epoch, last)
        seen = {e.id: json.loads(e.data) for e in got}
        for i in ids:
            self.assertEqual(seen.get(i), acked[i], i)

    def test_fsync_always_group_commit_then_sigkill(self):
        c = self.cluster
        data = self.data_dir()
        c.start_broker("--data-dir", data, "--fsync", "always")
        gw = c.start_gateway()
        ids = []
        lock = threading.Lock()

        def publisher(k):
            for i in range(40):
                body = ev(i, p=k)
                r = harness.post_json(gw.port, body)
                if r.status == 201:
                    with lock:
                        ids.append((r.json()["id"], body))

        threads = [threading.Thread(target=publisher, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(scaled(60))
        self.assertEqual(len(ids), 160)
        st = self.broker_stats()["store"]
        self.assertEqual(st["fsync"], "always")
        self.assertGreater(st["fsyncs"], 0)
        self.assertLessEqual(st["fsyncs"], self.broker_stats()["publishes"], "never more than one per publish")
        self.assertEqual(st["fsync_errors"], 0)
        old = c.broker
        old.proc.kill()
        c.start_broker("--data-dir", data, "--fsync", "always", bus=old.bus, api=old.api)
        last = max(ids, key=lambda x: gseq_of(x[0]))[0]
        got = {e.id: json.loads(e.data) for e in self.replay_all(gw, epoch_of(last), last)}
        for i, body in ids:
            self.assertEqual(got.get(i), body, i)

    # -- 2. torn tail --

    def test_torn_tail_is_cut(self):
        c = self.cluster
        data = self.data_dir()
        b = c.start_broker("--data-dir", data)
        gw = c.start_gateway()
        ids = harness.publish(gw.port, [ev(i, pad="x" * 50) for i in range(20)])
        self.assertEqual(b.proc.stop(), 0)
        [seg] = segments(data)
        size = os.path.getsize(seg)
        with open(seg, "rb") as f:
            whole = f.read()
        # one record is 44 bytes + room + json: cut inside the last one, at its first byte, and a few more
        for cut in (size - 1, size - 10, size - 60, size - 100):
            with open(seg, "wb") as f:
                f.write(whole[:cut])
            b = self.start(data, old=b)
            st = self.broker_stats()
            n = st["gseq"]
            self.assertLess(n, 20, "the cut record is gone")
            self.assertGreaterEqual(n, 17)
            self.assertEqual(st["epoch"], epoch_of(ids[0]))
            got = self.replay_all(gw, epoch_of(ids[0]), ids[n - 1])
            self.assertEqual([e.id for e in got], ids[:n])
            self.assertEqual([json.loads(e.data) for e in got], [ev(i, pad="x" * 50) for i in range(n)])
            self.assertIn("cut a torn tail", b.proc.log())
            self.assertEqual(b.proc.stop(), 0)
            with open(seg, "wb") as f:
                f.write(whole)
        # the next publish goes on after what survived
        b = self.start(data, old=b)
        harness.wait_http(gw, "/readyz")
        harness.wait_until(lambda: harness.post_json(gw.port, ev(99)).status == 201, scaled(10), "a publish")

    # -- 3. corruption in the middle --

    def test_corruption_in_the_middle_refuses_to_start_unless_repair(self):
        c = self.cluster
        data = self.data_dir()
        b = c.start_broker("--data-dir", data)
        r = c.cli("publish", "--ndjson", stdin="".join(json.dumps(ev(i)) + "\n" for i in range(10)))
        self.assertEqual(r.returncode, 0, r.stderr)
        epoch = self.broker_stats()["epoch"]
        self.assertEqual(b.proc.stop(), 0)
        [seg] = segments(data)
        with open(seg, "r+b") as f:
            f.seek(16 + 44 + 10)  # inside the first record's body
            byte = f.read(1)
            f.seek(16 + 44 + 10)
            f.write(bytes([byte[0] ^ 0xff]))
        p = c._start("broker", [harness.BROKER_BIN, "--bus", "tcp://127.0.0.1:0", "--api", "tcp://127.0.0.1:0",
                                "--data-dir", data])
        rc = p.wait_exit(scaled(10))
        self.assertEqual(rc, 1, p.log())
        self.assertIn("corrupt", p.log())
        self.assertIn(os.path.basename(seg), p.log())
        self.assertIn("offset=16", p.log())
        b = self.start(data, "--repair")
        self.assertIn("--repair", b.proc.log())
        st = self.broker_stats()
        self.assertNotEqual(st["epoch"], epoch, "a repair that dropped events starts a new epoch")
        self.assertEqual(st["gseq"], 0)

    # -- 4. disk full --

    def test_disk_full_answers_503_and_recovers(self):
        c = self.cluster
        data = self.data_dir()
        b = c.start_broker("--data-dir", data, "--segment-bytes", "1m")
        gw = c.start_gateway()
        ok = harness.publish(gw.port, [ev(0)])
        # a (soft) file-size limit on the running broker: its next writes fail with EFBIG
        subprocess.run(["prlimit", "--pid", str(b.proc.pid), "--fsize=%d:" % os.path.getsize(segments(data)[0])],
                       check=True)
        r = harness.post_json(gw.port, ev(1, pad="y" * 200))
        self.assertJSONError(r, 503, "storage_unavailable")
        r = harness.post_json(gw.port, ev(2, pad="y" * 200))
        self.assertJSONError(r, 503, "storage_unavailable")
        self.assertTrue(b.proc.alive())
        st = self.broker_stats()
        self.assertEqual(st["gseq"], 1, "nothing half published")
        self.assertGreaterEqual(st["store"]["write_errors"], 2)
        subprocess.run(["prlimit", "--pid", str(b.proc.pid), "--fsize=unlimited:"], check=True)
        later = harness.publish(gw.port, [ev(3)])
        self.assertEqual(gseq_of(later[0]), 2, "no hole")
        self.assertEqual(b.proc.stop(), 0)
        b = self.start(data, old=b)
        got = self.replay_all(gw, epoch_of(ok[0]), later[0])
        self.assertEqual([json.loads(e.data) for e in got], [ev(0), ev(3)])

    # -- 5. retention --

    def test_retention_by_count_bytes_and_age_across_restart(self):
        c = self.cluster
        data = self.data_dir()
        b = c.start_broker("--data-dir", data, "--segment-bytes", "4096", "--history-events", "100")
        for k in range(6):
            r = c.cli("publish", "--ndjson", stdin="".join(json.dumps(ev(k * 50 + i)) + "\n" for i in range(50)))
            self.assertEqual(r.returncode, 0, r.stderr)
        st = self.broker_stats()
        self.assertEqual(st["history"]["events"], 100)
        self.assertEqual(st["history"]["first_gseq"], 201)
        # whole segments before the oldest event retained are gone
        self.assertGreaterEqual(st["store"]["oldest_gseq"], 151)
        self.assertLessEqual(st["store"]["oldest_gseq"], 201)
        self.assertEqual(len(segments(data)), st["store"]["segments"])
        b.proc.kill()
        # by bytes: a smaller budget at restart keeps fewer
        b = self.start(data, "--segment-bytes", "4096", "--history-events", "100", "--history-bytes", "8k", old=b)
        st = self.broker_stats()
        self.assertLess(st["history"]["events"], 100)
        self.assertGreater(st["history"]["events"], 10)
        self.assertEqual(st["gseq"], 300)
        # rseq goes on for the room even with its older events gone
        gw = c.start_gateway()
        s = self.sse(gw, "/api/v1/events?room_id=room-d")
        [i] = harness.publish(gw.port, [ev(300)])
        self.assertEqual(gseq_of(i), 301)
        self.assertEqual(b.proc.stop(), 0)
        # by age: everything older than 1s goes at start and as time passes
        time.sleep(1.2)
        b = self.start(data, "--segment-bytes", "4096", "--history-max-age", "1s", old=b)
        st = self.broker_stats()
        self.assertEqual(st["history"]["events"], 0)
        self.assertEqual(st["gseq"], 301)
        self.assertEqual(st["epoch"], epoch_of(i))
        r = c.cli("publish", "--room", "room-d", "--type", "late")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(gseq_of(r.stdout.strip()), 302)
        harness.wait_until(lambda: self.broker_stats()["history"]["events"] == 0, scaled(5), "the age limit")


if __name__ == "__main__":
    harness.main()
