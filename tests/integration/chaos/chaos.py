"""
chaos.py - the whole deployment on separate hosts, loaded, while one thing breaks.

The topology (one network namespace per host, ../netbed/netbed.py):

- nats1, nats2, nats3: a JetStream cluster of Debian's nats-server (the
  Node of ../netbed/test_nats.py), the stream R3;
- broker1, broker2: roomcast-broker --store nats, --nats-url naming all
  three nodes, --nats-replicas 3, active-active on the one stream;
- gw1, gw2: roomcast-gateway with both brokers in --broker-bus and
  --broker-api;
- client: the test itself (its threads live in this host's network), with
  4 publishers (2 per gateway) POSTing batches at a steady rate, each event
  with its own idempotency key (`key`), and 20 streams (half on each
  gateway) that reconnect with Last-Event-ID, to the other gateway, when
  their connection closes (ResumingSubscriber of ../resume/resume_util.py).

A case (Chaos.run) loads it for a while, runs its fault on a thread while
the main thread reads the streams, loads it a while more, stops the
publishers and waits until every acknowledged event has arrived. Then
(check_deliveries): every id answered 201 reached every stream covering its
room exactly once and in order, with the event it was answered for, no
stream.reset; the POSTs that failed failed only with the kinds a client may
retry (503, 504: docs/PROTOCOL.md), and were retried with the same keys
until answered 201; no POST went unanswered. A thread samples both
gateways' /metrics all along (Chaos.samples) for the case's own checks.
The longest time a stream went without an event is printed ("chaos:"
lines) with the case's figures.

Publishers follow PROTOCOL.md: 503 -> a new connection, after Retry-After;
504 -> the same POST again at once, same keys. A POST not answered within
POST_TIMEOUT (publish timeout plus slack) is a hang: the test fails.
"""

import http.client
import json
import os
import shutil
import sys
import threading
import time
import traceback
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "netbed"))
sys.path.insert(0, os.path.join(HERE, "..", "resume"))

import netbed  # noqa: E402
import nats_client  # noqa: E402
import test_nats  # noqa: E402  (its Node: one nats-server on a host)
from resume_util import (ResumingSubscriber, Recorder, check_deliveries, harness, pump, scaled,  # noqa: E402
                         FAILOVER_ROOMS as ROOMS, failover_stream_specs, nats_store_skip_reason)

STREAM = "roomcast"
BUS_PORT, API_PORT, HTTP_PORT = 7410, 7411, 8080
NATS_PORT, NATS_HTTP_PORT = test_nats.CLIENT_PORT, test_nats.HTTP_PORT
PUBLISHERS = 4          # 2 per gateway
BATCH = 3               # events per POST
PERIOD = 0.05           # between a publisher's POSTs: 4 x 3 / 0.05 = 240 events/s in all
PUBLISH_TIMEOUT_MS = 5000
POST_TIMEOUT = PUBLISH_TIMEOUT_MS / 1000.0 + 5.0  # no answer by then: the gateway hangs
POST_DEADLINE = 60.0    # one POST, all its retries
RETRYABLE = {503: {"broker_unavailable", "overloaded", "too_many_connections", "shutting_down",
                   "storage_unavailable", "out_of_memory", "internal", "broker_error"},
             504: {"publish_outcome_unknown"}}


def report(what, **figures):
    print("chaos: %s %s" % (what, " ".join("%s=%s" % kv for kv in figures.items())), flush=True)


def http_get(addr, port, path, timeout=2.0):
    """GET from the calling thread's host; (status, body bytes)."""
    conn = http.client.HTTPConnection(addr, port, timeout=timeout)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def parse_metrics(body):
    out = {}
    for line in body.decode("utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


# ---------------------------------------------------------------------------
# the servers
# ---------------------------------------------------------------------------

class Broker:
    def __init__(self, bed, name, nats_urls):
        self.name = name
        self.host = bed.add_host(name)
        self.bus = "tcp://%s:%d" % (self.host.addr, BUS_PORT)
        self.api = "tcp://%s:%d" % (self.host.addr, API_PORT)
        self.nats_urls = nats_urls
        self.proc = None
        self.starts = 0

    def start(self):
        self.starts += 1
        argv = [harness.BROKER_BIN, "--bus", self.bus, "--api", self.api, "--store", "nats",
                "--nats-url", ",".join(self.nats_urls), "--nats-stream", STREAM, "--nats-replicas", "3", "--log-time"]
        self.proc = self.host.spawn("%s-%d" % (self.name, self.starts), argv, env=harness._child_env())
        harness.wait_broker(self.proc)

    def stats(self, client):
        """The broker's own `stats` answer (roomcast stats, run on the client host), or None."""
        r = client.run([harness.CLI_BIN, "stats", "--broker-api", self.api, "--timeout-ms", "2000"],
                       check=False, timeout=scaled(10))
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None


class Gateway:
    def __init__(self, bed, name, brokers):
        self.name = name
        self.host = bed.add_host(name)
        self.addr = self.host.addr
        self.brokers = brokers
        self.proc = None

    def start(self):
        argv = [harness.GATEWAY_BIN, "--listen", "%s:%d" % (self.addr, HTTP_PORT),
                "--broker-bus", ",".join(b.bus for b in self.brokers),
                "--broker-api", ",".join(b.api for b in self.brokers),
                "--publish-timeout-ms", str(PUBLISH_TIMEOUT_MS), "--broker-stats-ms", "500", "--log-time"]
        self.proc = self.host.spawn(self.name, argv, env=harness._child_env())
        harness.wait_gateway_listening(self.proc)

    def metrics(self):
        status, body = http_get(self.addr, HTTP_PORT, "/metrics")
        if status != 200:
            raise AssertionError("GET /metrics on %s: %d" % (self.name, status))
        return parse_metrics(body)


# ---------------------------------------------------------------------------
# the client's side
# ---------------------------------------------------------------------------

class Publisher(threading.Thread):
    """
    POSTs BATCH events every PERIOD to one gateway until stop is set (no burst
    to catch up after a slow POST). Every event has its own key; a POST that
    fails with a retryable answer is sent again with the same body (so the
    same keys) until 201 or POST_DEADLINE. acked gets (id, event) once per
    event, with the id of the 201 that ended its POST.
    """

    def __init__(self, chaos, p, gw):
        super().__init__(name="publisher-%d" % p, daemon=True)
        self.chaos, self.p, self.gw = chaos, p, gw
        self.conn = None
        self.posts = 0
        self.failures = []        # (t, status, code) of every answer that was not 201
        self.retried_ok = 0       # POSTs answered 201 after a failure
        self.failure = None       # what ended the thread early (a test failure)
        self.ack_times = []
        self.longest_post = 0.0

    def _connect(self):
        if self.conn is not None:
            self.conn.close()
        self.conn = http.client.HTTPConnection(self.gw.addr, HTTP_PORT, timeout=scaled(POST_TIMEOUT))

    def post_once(self, body):
        """(status, code or None, ids or None, retry_after)"""
        if self.conn is None:
            self._connect()
        try:
            self.conn.request("POST", "/api/v1/events", body=body, headers={"Content-Type": "application/json"})
            r = self.conn.getresponse()
            data = r.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            self.conn = None
            raise AssertionError("POST to %s: no answer within %.0fs (%r): a gateway must answer every POST "
                                 "within --publish-timeout-ms" % (self.gw.name, scaled(POST_TIMEOUT), e))
        if r.getheader("Connection", "").lower() == "close":
            self.conn.close()
            self.conn = None
        if r.status == 201:
            return 201, None, json.loads(data)["ids"], 0
        try:
            code = json.loads(data)["error"]["code"]
        except (ValueError, KeyError, TypeError):
            code = repr(data[:200])
        return r.status, code, None, float(r.getheader("Retry-After") or 0)

    def publish(self, events):
        body = json.dumps(events, separators=(",", ":")).encode()
        t0 = time.monotonic()
        deadline = t0 + scaled(POST_DEADLINE)
        failed = False
        while True:
            status, code, ids, retry_after = self.post_once(body)
            self.posts += 1
            if status == 201:
                if len(ids) != len(events):
                    raise AssertionError("%d ids for %d events" % (len(ids), len(events)))
                if failed:
                    self.retried_ok += 1
                now = time.monotonic()
                self.longest_post = max(self.longest_post, now - t0)
                self.ack_times.append(now)
                return ids
            self.failures.append((time.monotonic(), status, code))
            if code not in RETRYABLE.get(status, ()):
                raise AssertionError("POST to %s answered %d %s: not an answer a client may retry "
                                     "(docs/PROTOCOL.md)" % (self.gw.name, status, code))
            failed = True
            if time.monotonic() >= deadline:
                raise AssertionError("POST to %s not answered 201 within %.0fs of retries (last: %d %s)" % (
                    self.gw.name, scaled(POST_DEADLINE), status, code))
            if status == 503:
                # a new connection (503 closes it), after Retry-After
                if self.conn is not None:
                    self.conn.close()
                    self.conn = None
                time.sleep(retry_after or 1.0)
            else:
                time.sleep(0.02)

    def run(self):
        c = self.chaos
        r = 0
        due = time.monotonic()
        try:
            while not c.stop_publishing.is_set():
                evs = [{"type": "t", "room_id": ROOMS[(self.p + r + b) % len(ROOMS)], "key": "p%d-%d-%d" % (
                        self.p, r, b), "pub": self.p, "r": r, "b": b} for b in range(BATCH)]
                ids = self.publish(evs)
                with c.lock:
                    c.acked.extend(zip(ids, evs))
                r += 1
                due += PERIOD
                now = time.monotonic()
                if due > now:
                    time.sleep(due - now)
                else:
                    due = now
        except Exception as e:  # the test fails with it
            self.failure = "publisher %d: %s" % (self.p, e)
            if not isinstance(e, AssertionError):
                self.failure += "\n" + traceback.format_exc()
        finally:
            if self.conn is not None:
                self.conn.close()


class Chaos(unittest.TestCase):
    """A case: setUp builds and starts the topology; the test calls self.run_case(fault)."""

    WARMUP = 4.0   # seconds of load before the fault
    AFTER = 5.0    # seconds of load after the fault's function returned

    def setUp(self):
        self.t_start = time.monotonic()
        self.bed = netbed.Bed()
        self.inside = None
        self.failed_setup = True
        try:
            self._build()
            self.failed_setup = False
        finally:
            if self.failed_setup:
                self._teardown()  # run() prints the logs

    def _build(self):
        bed = self.bed
        if bed.stale_removed:
            print("chaos: removed a dead run's namespaces: %s" % " ".join(bed.stale_removed), flush=True)
        self.nodes = [test_nats.Node(bed, "nats%d" % i) for i in (1, 2, 3)]
        nats_urls = ["nats://%s:%d" % (n.host.addr, NATS_PORT) for n in self.nodes]
        self.brokers = [Broker(bed, "broker%d" % i, nats_urls) for i in (1, 2)]
        self.gateways = [Gateway(bed, "gw%d" % i, self.brokers) for i in (1, 2)]
        self.client = bed.add_host("client")
        # from here on this thread, and every thread it starts, is on the client host
        self.inside = self.client.inside()
        self.inside.__enter__()
        nats_bin = shutil.which("nats-server")
        self.nats_bin = nats_bin
        for n in self.nodes:
            n.write_conf(self.nodes)
            n.start(nats_bin)
        for n in self.nodes:
            self.wait_nats_healthy(n)
        self.brokers[0].start()  # creates the R3 stream
        self.brokers[1].start()
        for g in self.gateways:
            g.start()
        for g in self.gateways:
            harness.wait_until(lambda: http_get(g.addr, HTTP_PORT, "/readyz", timeout=1)[0] == 200, scaled(15),
                               "GET /readyz on %s to answer 200" % g.name, interval=0.05)
        self.js_conn = None
        harness.wait_until(self.stream_leader, scaled(15), "a stream leader")
        report("up", seconds="%.1f" % (time.monotonic() - self.t_start),
               hosts=" ".join("%s=%s" % (h.name, h.addr) for h in bed.hosts.values()))

    def tearDown(self):
        if self.failed_setup:
            return
        bad = self._teardown()
        if bad:
            raise AssertionError("on SIGTERM: %s (their logs below)" % "; ".join(bad))

    def _teardown(self):
        """Stops gateways and brokers (SIGTERM: each must exit 0, no sanitizer report), then the bed."""
        bad = []
        try:
            if getattr(self, "js_conn", None) is not None:
                self.js_conn.close()
            for s in getattr(self, "subs", []):
                s.close()
            for x in getattr(self, "gateways", []) + getattr(self, "brokers", []):
                if x.proc is not None:
                    rc = x.proc.stop(timeout=scaled(10))
                    if rc != 0:
                        bad.append("%s exited %s" % (x.proc.name, rc))
        finally:
            if self.inside is not None:
                self.inside.__exit__(None, None, None)
                self.inside = None
            self.bed.close()
        return bad

    def _dump_logs(self):
        sys.stderr.write("\n===== process logs (%s) =====\n%s\n===== end =====\n" % (self.bed.logdir, self.bed.logs()))

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors)
        try:
            return super().run(result)
        finally:
            bed = getattr(self, "bed", None)
            if bed is not None:
                if len(result.failures) + len(result.errors) > before or os.environ.get("ROOMCAST_TEST_SHOW_LOGS"):
                    self._dump_logs()
                    print("chaos: logs and NATS stores kept in %s" % bed.logdir, flush=True)
                else:
                    shutil.rmtree(bed.logdir, ignore_errors=True)

    # -- NATS views (from the client host) --

    def wait_nats_healthy(self, node):
        def healthy():
            if not node.proc.alive():
                raise AssertionError("%s exited with %s:\n%s" % (node.name, node.proc.popen.poll(), node.proc.log()))
            return http_get(node.host.addr, NATS_HTTP_PORT, "/healthz", timeout=1)[0] == 200
        harness.wait_until(healthy, scaled(20), "%s /healthz 200" % node.name, interval=0.05)

    def js(self):
        """A JetStream API client on a live node (reconnects when its node went away)."""
        if self.js_conn is not None and not self.js_conn.closed:
            return nats_client.JetStream(self.js_conn, timeout=1.0)
        self.js_conn = None
        for n in self.nodes:
            if n.proc is None or not n.proc.alive() or n.host.cut_off:
                continue
            try:
                self.js_conn = nats_client.Conn(self.client.connect(n.host.addr, NATS_PORT, timeout=1), timeout=1)
                return nats_client.JetStream(self.js_conn, timeout=1.0)
            except (OSError, nats_client.NatsError, TimeoutError):
                continue
        raise AssertionError("no NATS node answers")

    def stream_leader(self):
        """The stream's leader (a node name) from STREAM.INFO's cluster.leader, or None while there is none."""
        try:
            info = self.js().stream_info(STREAM, timeout=1.0)
        except (nats_client.NatsError, TimeoutError, OSError):
            if self.js_conn is not None:
                self.js_conn.close()
                self.js_conn = None
            return None
        return info.get("cluster", {}).get("leader")

    def node(self, name):
        return next(n for n in self.nodes if n.name == name)

    def node_state(self, node):
        """The stream's state in node's own replica (its /jsz: messages, first_seq, last_seq), or None."""
        try:
            status, body = http_get(node.host.addr, NATS_HTTP_PORT, "/jsz?accounts=true&streams=true")
        except (OSError, http.client.HTTPException):
            return None
        if status != 200:
            return None
        for acc in json.loads(body).get("account_details") or []:
            for s in acc.get("stream_detail") or []:
                if s["name"] == STREAM:
                    return s["state"]
        return None

    def nats_clients(self, node):
        """The addresses of the roomcast brokers connected to node (its /connz)."""
        status, body = http_get(node.host.addr, NATS_HTTP_PORT, "/connz?limit=1024", timeout=2)
        if status != 200:
            return set()
        return {c.get("ip") for c in json.loads(body).get("connections") or [] if c.get("name") == "roomcast-broker"}

    # -- the load and the checks --

    def brokers_on(self, node):
        """The brokers whose NATS connection is to node."""
        addrs = self.nats_clients(node)
        return [b for b in self.brokers if b.host.addr in addrs]

    def lead_where_a_broker_is(self):
        """Moves the stream's leadership until a broker is connected to its leader (bounded); its name."""
        for _ in range(6):
            leader = harness.wait_until(self.stream_leader, scaled(20), "a stream leader")
            if self.brokers_on(self.node(leader)):
                return leader
            try:
                self.js().api("STREAM.LEADER.STEPDOWN." + STREAM, timeout=2.0)
            except (nats_client.NatsError, TimeoutError, OSError):
                pass
            harness.wait_until(lambda: self.stream_leader() not in (None, leader), scaled(20),
                               "another stream leader after the step-down")
        raise AssertionError("no broker connected to the stream leader after 6 step-downs")

    def leader_to_break(self):
        """
        The stream's leader, moved where a broker is: (its name, its Node,
        the brokers connected to it, every broker's `stats` nats section).
        """
        leader = self.lead_where_a_broker_is()
        victim = self.node(leader)
        return leader, victim, self.brokers_on(victim), {b.name: b.stats(self.client)["nats"] for b in self.brokers}

    def wait_new_leader(self, old, what):
        """Waits (bounded) until STREAM.INFO names a leader other than old; its name."""
        def new_leader():
            new = self.stream_leader()
            return new if new and new != old else None
        return harness.wait_until(new_leader, scaled(30), what)

    def sample_metrics(self):
        """Every ~0.2 s until the case ends: (t, gateway index, metrics) of both gateways."""
        while not self.stop_sampling.wait(0.2):
            for i, g in enumerate(self.gateways):
                try:
                    self.samples.append((time.monotonic(), i, g.metrics()))
                except (OSError, http.client.HTTPException, ValueError, AssertionError) as e:
                    self.sample_errors.append("%s: %r" % (g.name, e))

    def series(self, gw, name, since=0.0, until=None):
        """The values of metric name (with its labels) on gateway gw, sampled from since to until: [(t, v)]."""
        until = until or float("inf")
        return [(t, m[name]) for t, i, m in self.samples if i == gw and since <= t <= until and name in m]

    def run_case(self, case, fault):
        """
        Loads the topology WARMUP s, runs fault(self) on a thread (it returns
        when the fault and its repair are done), loads AFTER s more, stops the
        publishers and waits for every acknowledged event on every stream.
        Checks deliveries and publish answers; returns a dict of figures.
        """
        self.lock = threading.Lock()
        self.acked = []
        self.stop_publishing = threading.Event()
        self.stop_sampling = threading.Event()
        self.samples, self.sample_errors = [], []
        self.marks = {}  # name -> monotonic time, set by the fault
        endpoints = [(g.addr, HTTP_PORT) for g in self.gateways]
        self.recorders, self.subs = [], []
        for k, rooms in enumerate(failover_stream_specs()):
            rec = Recorder(rooms)
            self.recorders.append(rec)
            # stream k starts on gateway k % 2 and moves to the other when its connection closes
            ports = endpoints[k % 2:] + endpoints[:k % 2]
            self.subs.append(ResumingSubscriber(ports, "/api/v1/events?room_id=" + ",".join(rooms), on_event=rec,
                                                name="s%d" % k))
        for s in self.subs:
            s.cur.wait_open(scaled(10))
        sampler = threading.Thread(target=self.sample_metrics, name="metrics", daemon=True)
        sampler.start()
        pubs = [Publisher(self, p, self.gateways[p % 2]) for p in range(PUBLISHERS)]
        fault_error = []

        def chaos():
            try:
                time.sleep(self.WARMUP)
                self.marks["fault"] = time.monotonic()
                fault(self)
                self.marks["repaired"] = time.monotonic()
                time.sleep(self.AFTER)
            except Exception as e:
                fault_error.append("the fault: %s\n%s" % (e, traceback.format_exc()))
            finally:
                self.stop_publishing.set()

        ct = threading.Thread(target=chaos, name="chaos", daemon=True)
        t0 = time.monotonic()
        for p in pubs:
            p.start()
        ct.start()

        def expected(rec):
            return sum(1 for _, e in self.acked if e["room_id"] in rec.rooms)

        def done():
            problems = fault_error + [p.failure for p in pubs if p.failure]
            if problems:
                raise AssertionError("; ".join(problems))
            if ct.is_alive() or any(p.is_alive() for p in pubs):
                return False
            with self.lock:
                return all(len(r.events) >= expected(r) for r in self.recorders)

        def idle():
            return any(s.reconnect_if_closed() for s in self.subs)

        try:
            pump(self.subs, done, self.WARMUP + self.fault_seconds() + self.AFTER + scaled(POST_DEADLINE) + scaled(30),
                 "every acknowledged event on every stream", idle=idle,
                 status=lambda: "acked %d, streams %r" % (len(self.acked), [len(r.events) for r in self.recorders]))
        finally:
            self.stop_publishing.set()
            ct.join(scaled(30))
            for p in pubs:
                p.join(scaled(POST_DEADLINE))
            self.stop_sampling.set()
            sampler.join(5)
        t_end = time.monotonic()
        for s in self.subs:
            s.read_some()  # nothing more: no copy arrives late
        stall, k, t_gap_end = check_deliveries(self.acked, self.recorders, fields=("room_id", "pub", "r", "b"))
        failures = [f for p in pubs for f in p.failures]
        kinds = {}
        for _, status, code in failures:
            kinds["%d:%s" % (status, code)] = kinds.get("%d:%s" % (status, code), 0) + 1
        acks = sorted(t for p in pubs for t in p.ack_times)
        ack_gap = max([b - a for a, b in zip(acks, acks[1:])] or [0.0])
        self.figures = {
            "events": len(self.acked), "seconds": "%.1f" % (t_end - t0),
            "stall_ms": "%.0f" % (stall * 1000),
            "stall_stream": k,
            "stall_ended_s_after_fault": "%.1f" % (t_gap_end - self.marks["fault"]) if t_gap_end else "-",
            "publish_gap_ms": "%.0f" % (ack_gap * 1000),
            "longest_post_ms": "%.0f" % (max(p.longest_post for p in pubs) * 1000),
            "post_errors": ",".join("%s=%d" % kv for kv in sorted(kinds.items())) or "none",
            "retried_ok": sum(p.retried_ok for p in pubs),
            "reconnects": sum(s.reconnects for s in self.subs),
        }
        self.assertGreater(len(self.acked), 0)
        # every publisher published after the repair: the service came back for everyone
        for p in pubs:
            self.assertTrue(any(t > self.marks["repaired"] for t in p.ack_times),
                            "publisher %d got no 201 after the fault was repaired" % p.p)
        return self.figures

    def fault_seconds(self):
        """An upper bound of the fault function's duration, for the pump's deadline."""
        return scaled(60)

    def metric_delta(self, name):
        """Summed over both gateways: last sample minus first sample of a counter."""
        total = 0.0
        for i in range(len(self.gateways)):
            s = self.series(i, name)
            if s:
                total += s[-1][1] - s[0][1]
        return total

    def gateway_figures(self):
        """The failover counters both gateways moved during the case (from the /metrics samples)."""
        names = ["roomcast_gateway_api_retries_total", "roomcast_bus_merge_duplicates_total",
                 "roomcast_bus_merge_filled_total", "roomcast_bus_merge_gaps_total",
                 "roomcast_bus_merge_epoch_ignored_total"]
        return {n.replace("roomcast_", ""): "%d" % self.metric_delta(n) for n in names}


def main():
    try:
        netbed.require()
        why = nats_store_skip_reason()
        if why is not None:
            raise netbed.Skip(why)
    except netbed.Skip as e:
        print("SKIP: %s" % e, flush=True)
        return netbed.SKIP
    prog = unittest.main(verbosity=2, exit=False)
    return 0 if prog.result.wasSuccessful() else 1
