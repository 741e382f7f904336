#!/usr/bin/env python3
"""`docker-compose -f docker-compose.yml -f deploy/compose.ha.yml up`, for real.

The README's "More than one machine" stack on one podman host: three NATS
servers in a JetStream cluster (deploy/Dockerfile.nats, Debian's nats-server),
two brokers with `--store nats` and 3 replicas, three gateways that dial both
brokers, nginx in front. With podman set up as for deploy_compose_up
(tests/deploy/engine.py) and the images built or taken from the cache:

1. `up -d`, every container healthy; each broker reports the NATS store with
   3 replicas, connected; the JetStream cluster has 3 nodes and the stream a
   leader and two current replicas;
2. three streams through lb on one room, and a publisher POSTing through lb
   the way a client should: every event with an Idempotency-Key, a 503, 504,
   502 or a cut connection answered by sending the same POST again;
3. while it publishes, one broker container is killed (SIGKILL), then the
   NATS node that leads the stream: publishing goes on (each POST ends in
   201), and every stream gets every acknowledged event exactly once, in
   order, with no stream.reset;
4. the killed broker and NATS node started again: healthy, and a new event
   reaches the streams;
5. `docker-compose stop` of the NATS node that now leads the stream, while
   the client publishes and a stream reads: the node goes into lame duck
   mode (the file's stop_signal, SIGUSR2, through the container's init),
   hands the stream over and exits; every POST is answered 201 at once, the
   stream gets every event; the node is started again;
6. `down -v` leaves no container, network or volume of the project, and so
   does the teardown when a check fails (after printing the logs).

Exit 77 (skip) where containers cannot run (see engine.py).
"""
import http.client
import json
import os
import sys
import tempfile
import threading
import time

import engine
from harness import SOURCE_DIR, Closed, SSEStream, http_request, id_gseq, run_tests
from test_compose_up import COMPOSE_FILE, Stack, log, streams_open, wait_for

HA_FILE = os.path.join(SOURCE_DIR, "deploy", "compose.ha.yml")
ROOM = "ha-room"
STREAMS = 3
# events acknowledged before the first kill, between the kills, and after the second
PER_PHASE = 15
PUBLISH_PHASE_TIMEOUT = 60.0
# pause between two POSTs: a steady client, not a load test
PUBLISH_GAP = 0.05


class HAStack(Stack):
    files = (COMPOSE_FILE, HA_FILE)
    prefix = "roomcastha"
    images_of = {"nats1": "roomcast-nats", "nats2": "roomcast-nats", "nats3": "roomcast-nats",
                 "broker": "roomcast", "broker2": "roomcast", "gateway": "roomcast", "demo": "roomcast",
                 "lb": "roomcast-lb"}
    # deploy/nginx.conf as it is (60 s): a POST may wait for a NATS leader election longer than the
    # 2 s of deploy_compose_up's idle check, and nginx would answer 504 and mark its gateway failed
    nginx_read_timeout = None

    def one(self, service):
        names = self.containers(service, all_=True)
        assert len(names) == 1, f"{service}: containers {names}"
        return names[0]

    def exec_json(self, name, *argv):
        r = self.eng.podman("exec", name, *argv, check=False, timeout=30)
        if r.returncode != 0:
            return None
        try:
            return json.loads(r.stdout)
        except ValueError:
            return None

    def broker_stats(self, service):
        return self.exec_json(self.one(service), "roomcast", "stats", "--broker-api", "tcp://127.0.0.1:7411",
                              "--timeout-ms", "2000")

    def jsz(self, service):
        return self.exec_json(self.one(service), "curl", "-fsS", "--max-time", "3",
                              "http://127.0.0.1:8222/jsz?streams=true")

    def _stream_view(self, node):
        """(leader, replicas [(name, current)], meta cluster size) of the roomcast stream as node sees it."""
        j = self.jsz(node)
        for acc in (j or {}).get("account_details") or []:
            for s in acc.get("stream_detail") or []:
                c = s.get("cluster") or {}
                if s.get("name") == "roomcast" and c.get("leader"):
                    reps = sorted((r.get("name"), r.get("current")) for r in c.get("replicas") or [])
                    return c["leader"], reps, (j.get("meta_cluster") or {}).get("cluster_size")
        return None

    def stream_cluster(self, nodes=("nats1", "nats2", "nats3")):
        """The roomcast stream as its leader sees it (the others' view of the replicas lags), or None."""
        for node in nodes:
            v = self._stream_view(node)
            if v:
                lv = self._stream_view(v[0]) if v[0] != node else v
                return lv if lv and lv[0] == v[0] else None
        return None

    def stream_on_three(self, nodes=("nats1", "nats2", "nats3")):
        """stream_cluster() once the leader has two current replicas, else None."""
        v = self.stream_cluster(nodes)
        return v if v and len(v[1]) == 2 and all(cur for _, cur in v[1]) and v[2] == 3 else None

    def kill(self, name):
        """SIGKILL one container, as `docker kill NAME` (a crash: no graceful stop)."""
        status, body = self.eng.api("POST", f"/containers/{name}/kill?signal=KILL")
        assert status == 204, f"kill {name}: {status} {body!r}"


class Reader(threading.Thread):
    """One SSE stream through lb, read on a thread: every event with the time it came."""

    def __init__(self, port, room):
        super().__init__(daemon=True)
        self.s = SSEStream(port, f"/api/v1/events?room_id={room}", timeout=15)
        assert self.s.status == 200, f"stream: status {self.s.status}"
        self.events = []  # (monotonic time, id, data)
        self.error = None
        self.halt = threading.Event()

    def run(self):
        while not self.halt.is_set():
            try:
                ev_id, data = self.s.next_event(0.5)
            except TimeoutError:
                continue
            except Closed:
                self.error = "the stream was closed"
                return
            except Exception as e:  # noqa: BLE001 -- reported by the test
                self.error = f"reading: {e!r}"
                return
            self.events.append((time.monotonic(), ev_id, data))

    def stop(self):
        self.halt.set()
        self.join(timeout=5)
        self.s.close()


class Publisher(threading.Thread):
    """POSTs event after event through lb, each until 201, the way the README tells a client to."""

    def __init__(self, port, room, deadline, keys=None):
        super().__init__(daemon=True)
        self.port, self.room, self.deadline = port, room, deadline
        # each publisher its own keys: the same key again is answered with the first event's id
        self.keys = keys or f"ha-{os.getpid()}"
        self.acked = []          # (n, id, monotonic time of the 201)
        self.answers = {}        # phase -> status (or "cut") -> count, the 201s included
        self.phase = "before the kills"
        self.error = None
        self.halt = threading.Event()
        self.n = 0

    def post(self, n):
        ev = {"type": "message.created", "room_id": self.room, "message": {"text": f"ha {n}"}, "n": n}
        key = f"{self.keys}-{n}"
        while True:
            if time.monotonic() > self.deadline:
                raise AssertionError(f"event {n} not acknowledged by the deadline; answers so far {self.answers}")
            try:
                status, headers, body = http_request(self.port, "POST", "/api/v1/events", ev,
                                                     headers={"Idempotency-Key": key}, timeout=20)
            except (OSError, http.client.HTTPException):
                status, headers, body = "cut", {}, b""
            counts = self.answers.setdefault(self.phase, {})
            counts[status] = counts.get(status, 0) + 1
            if status == 201:
                return json.loads(body)["id"]
            if status in (502, 503, 504, "cut"):
                # 503 says when (Retry-After); the others: soon, with the same key
                time.sleep(min(float(headers.get("retry-after", "0.2") or 0.2), 1.0))
                continue
            raise AssertionError(f"event {n}: {status} {body!r}: not an answer a client retries")

    def run(self):
        try:
            while not self.halt.is_set():
                self.n += 1
                ev_id = self.post(self.n)
                self.acked.append((self.n, ev_id, time.monotonic()))
                time.sleep(PUBLISH_GAP)
        except Exception as e:  # noqa: BLE001 -- reported by the test
            self.error = str(e)

    def wait_acked(self, count, what):
        wait_for(what, lambda: len(self.acked) >= count or self.error is not None or not self.is_alive(),
                 timeout=max(self.deadline - time.monotonic(), 1), interval=0.05)
        assert self.error is None, f"the publisher failed: {self.error}"
        assert len(self.acked) >= count, f"the publisher stopped after {len(self.acked)} events"


def check_started(stack):
    """Both brokers on NATS with 3 replicas; a 3-node JetStream cluster; the stream on 3 nodes."""
    for b in ("broker", "broker2"):
        st = wait_for(f"{b}'s stats", lambda: stack.broker_stats(b), timeout=15)
        nats = st.get("nats") or (st.get("store") or {}).get("nats") or {}
        assert nats.get("connected") is True and nats.get("replicas") == 3, f"{b}: stats nats {nats}"
    try:
        leader, reps, size = wait_for("the stream on 3 nodes", stack.stream_on_three, timeout=20)
    except AssertionError as e:
        raise AssertionError(f"{e}: the stream as its leader sees it: {stack.stream_cluster()}") from None
    log(f"check 1 passed: brokers on NATS (3 replicas, connected); JetStream cluster of 3, stream leader "
        f"{leader}, replicas {reps}")
    return leader


def gateway_metric(stack, name, metric):
    r = stack.eng.podman("exec", name, "curl", "-fsS", "--max-time", "3", "http://127.0.0.1:8080/metrics",
                         check=False)
    total = 0
    for line in r.stdout.splitlines():
        if line.startswith(metric + " ") or line.startswith(metric + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def check_failover(stack, leader):
    """Kill a broker, then the stream's NATS leader, while a client publishes and 3 streams read."""
    readers = [Reader(stack.port, ROOM) for _ in range(STREAMS)]
    for r in readers:
        r.start()
    gateways = stack.containers("gateway")
    spread = wait_for("the streams on the gateways",
                      lambda: (lambda c: c if sum(v or 0 for v in c.values()) == STREAMS else None)(
                          {g: streams_open(stack, g) for g in gateways}), timeout=15)
    pub = Publisher(stack.port, ROOM, time.monotonic() + PUBLISH_PHASE_TIMEOUT)
    kills = {}
    try:
        pub.start()
        pub.wait_acked(PER_PHASE, "events before the kills")
        broker = stack.one("broker")
        stack.kill(broker)
        kills["broker"] = time.monotonic()
        pub.phase = "after the broker died"
        log(f"killed {broker} (SIGKILL) after {len(pub.acked)} acknowledged events")
        pub.wait_acked(len(pub.acked) + PER_PHASE, "events after the broker died")
        nats = stack.one(leader)
        stack.kill(nats)
        kills["nats"] = time.monotonic()
        pub.phase = "after the NATS leader died"
        log(f"killed {nats}, the stream's leader (SIGKILL), after {len(pub.acked)} acknowledged events")
        pub.wait_acked(len(pub.acked) + PER_PHASE, "events after the NATS leader died")
    finally:
        pub.halt.set()
        pub.join(timeout=30)
    assert pub.error is None, f"the publisher failed: {pub.error}"
    acked = pub.acked
    ids = [i for _, i, _ in acked]
    gseqs = [id_gseq(i) for i in ids]
    assert gseqs == sorted(set(gseqs)), f"acknowledged ids out of order or repeated: {ids}"
    assert len({i.rsplit('-', 1)[0] for i in ids}) == 1, f"more than one epoch: {ids}"

    # every acknowledged id on every stream, once, in order, nothing else
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(len(r.events) < len(ids) and not r.error for r in readers):
        time.sleep(0.2)
    time.sleep(1.0)  # anything extra (a duplicate) would come now
    for r in readers:
        r.stop()
    longest, longest_at = 0.0, 0.0
    for k, r in enumerate(readers):
        assert r.error is None, f"stream {k}: {r.error} after {len(r.events)} events"
        got = [(i, d.get("n"), d.get("type")) for _, i, d in r.events]
        resets = [g for g in got if g[2] == "stream.reset"]
        assert not resets, f"stream {k}: {resets}"
        assert [i for i, _, _ in got] == ids, (
            f"stream {k}: got {len(got)} events, {len(ids)} acknowledged; missing "
            f"{sorted(set(ids) - {i for i, _, _ in got})[:10]}, first ids {[i for i, _, _ in got][:5]} vs {ids[:5]}")
        assert [n for _, n, _ in got] == [n for n, _, _ in acked], f"stream {k}: payloads do not match the POSTs"
        times = [t for t, _, _ in r.events]
        for a, b in zip(times, times[1:]):
            if b - a > longest:
                longest, longest_at = b - a, a
    retries = sum(gateway_metric(stack, g, "roomcast_gateway_api_retries_total") for g in gateways)
    since = ", ".join(f"{longest_at - t:+.1f}s from the {what} kill" for what, t in kills.items())
    log(f"check 2 passed: {len(ids)} events acknowledged (answers by phase {pub.answers}), every one on each "
        f"of {STREAMS} streams through lb ({spread}) once, in order, no reset; longest time between two "
        f"deliveries {longest:.2f}s, starting {since}; gateways sent {retries:.0f} api requests again")
    return longest, pub.answers


def check_restart(stack, leader):
    """The killed broker and NATS node start again and become healthy; a new event reaches a stream."""
    start = time.monotonic()
    broker, nats = stack.one("broker"), stack.one(leader)
    stack.eng.podman("start", nats, timeout=60)
    stack.eng.podman("start", broker, timeout=60)
    stack.wait_healthy([nats, broker], timeout=60)
    st = wait_for("the restarted broker's stats", lambda: stack.broker_stats("broker"), timeout=15)
    figures = st.get("nats") or (st.get("store") or {}).get("nats") or {}
    assert figures.get("connected") is True, f"restarted broker: {figures}"
    cl = wait_for("the stream on 3 current nodes again", stack.stream_on_three, timeout=30)
    s = SSEStream(stack.port, f"/api/v1/events?room_id={ROOM}-after", timeout=15)
    try:
        assert s.status == 200, f"status {s.status}"
        status, _, body = http_request(stack.port, "POST", "/api/v1/events",
                                       {"type": "message.created", "room_id": f"{ROOM}-after", "n": 1},
                                       headers={"Idempotency-Key": f"ha-{os.getpid()}-after"}, timeout=20)
        assert status == 201, f"POST after the restarts: {status} {body!r}"
        ev_id = json.loads(body)["id"]
        got_id, data = s.next_event(10)
        assert (got_id, data.get("n")) == (ev_id, 1), f"got {got_id} {data}, POSTed {ev_id}"
    finally:
        s.close()
    log(f"check 3 passed: {broker} and {nats} restarted, healthy after {time.monotonic() - start:.1f}s; "
        f"stream leader {cl[0]}, replicas {cl[1]}; a new event streamed")


def check_planned_stop(stack):
    """`docker-compose stop` the stream's NATS leader under a steady client: lame duck, no error."""
    leader, _, _ = wait_for("the stream on 3 current nodes", stack.stream_on_three, timeout=30)
    room = f"{ROOM}-stop"
    reader = Reader(stack.port, room)
    reader.start()
    pub = Publisher(stack.port, room, time.monotonic() + PUBLISH_PHASE_TIMEOUT, keys=f"ha-{os.getpid()}-stop")
    pub.phase = "around the stop"
    try:
        pub.start()
        pub.wait_acked(PER_PHASE, "events before the stop")
        t0 = time.monotonic()
        stack.compose("stop", "-t", "30", leader, timeout=60)
        stopped = time.monotonic() - t0
        pub.wait_acked(len(pub.acked) + PER_PHASE, "events after the stop")
    finally:
        pub.halt.set()
        pub.join(timeout=30)
    assert pub.error is None, f"the publisher failed: {pub.error}"
    ids = [i for _, i, _ in pub.acked]
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(reader.events) < len(ids) and not reader.error:
        time.sleep(0.2)
    time.sleep(0.5)
    reader.stop()
    assert reader.error is None, f"stream: {reader.error}"
    got = [i for _, i, _ in reader.events]
    if got != ids:
        missing = [k for k, i in enumerate(ids) if i not in set(got)]
        stats = {b: stack.broker_stats(b) for b in ("broker", "broker2")}
        raise AssertionError(f"stream: {len(got)} events, {len(ids)} acknowledged; missing positions "
                             f"{missing[:5]}..{missing[-5:]} ({len(missing)}), ids {[ids[k] for k in missing[:3]]}; "
                             f"got first/last {got[:2]} {got[-2:]}; acked first/last {ids[:2]} {ids[-2:]}; "
                             f"brokers' stats {json.dumps(stats)[:3000]}")
    logs = stack.eng.podman("logs", stack.one(leader), check=False, timeout=30)
    assert "Entering lame duck mode" in logs.stdout + logs.stderr, (
        f"{leader} did not go into lame duck mode on docker-compose stop:\n{(logs.stdout + logs.stderr)[-2000:]}")
    answers = pub.answers["around the stop"]
    assert set(answers) == {201}, f"POSTs around a planned stop were answered {answers}"
    times = [t for t, _, _ in reader.events]
    longest = max([b - a for a, b in zip(times, times[1:])] or [0.0])
    new = wait_for("another stream leader", lambda: (lambda v: v[0] if v and v[0] != leader else None)(
        stack.stream_cluster([n for n in ("nats1", "nats2", "nats3") if n != leader])), timeout=15)
    stack.compose("start", leader, timeout=60)
    stack.wait_healthy([stack.one(leader)], timeout=60)
    wait_for("the stream on 3 current nodes again", stack.stream_on_three, timeout=30)
    log(f"check 4 passed: docker-compose stop {leader} (lame duck) took {stopped:.1f}s; {len(ids)} POSTs all "
        f"201 at once ({answers}), the stream got each; longest time between two deliveries {longest:.2f}s; "
        f"{new} leads; {leader} started again")
    return longest


def check_down(stack):
    stack.compose("down", "-v", "--timeout", "5", timeout=120)
    stack.up = False
    label = f"label=com.docker.compose.project={stack.project}"
    left = {
        "containers": stack.eng.podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split(),
        "networks": [n for n in stack.eng.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
                     if n.startswith(stack.project)],
        "volumes": [v for v in stack.eng.podman("volume", "ls", "--format", "{{.Name}}").stdout.split()
                    if v.startswith(stack.project + "_")],
    }
    assert not any(left.values()), f"left after down -v: {left}"
    log("check 5 passed: docker-compose down -v left no container, network or volume of the project")


def test_compose_ha():
    with tempfile.TemporaryDirectory(prefix="roomcast-compose-ha.") as tmp, engine.Podman(log) as eng:
        stack = HAStack(eng, tmp)
        health = threading.Thread(target=eng.run_health_checks, args=(stack.containers, f"{stack.project}_default"),
                                  daemon=True)
        ok = False
        try:
            build = stack.images()
            health.start()
            healthy = stack.start()
            # the demo publisher's global events would reach the test's streams
            stack.compose("stop", "-t", "5", "demo", timeout=60)
            leader = check_started(stack)
            longest, _ = check_failover(stack, leader)
            check_restart(stack, leader)
            planned = check_planned_stop(stack)
            check_down(stack)
            ok = True
            log(f"done: build {build:.1f}s (0 = cached), up to healthy {healthy:.1f}s, longest time without a "
                f"delivery across the kills {longest:.2f}s, across the planned stop {planned:.2f}s")
        finally:
            if not ok and stack.up:
                stack.print_logs()
            stack.down()
            eng.stop_health_checks()
            health.join(timeout=15) if health.is_alive() else None


if __name__ == "__main__":
    sys.exit(run_tests([test_compose_ha]))
