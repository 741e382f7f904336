#!/usr/bin/env python3
"""`docker-compose up` for real: the images build, the stack runs, nginx serves it.

The README's compose stack (docker-compose.yml: broker, gateways, lb, demo)
run by Debian's docker-compose against Debian's podman (its Docker API
socket), on this machine:

1. podman is set up the way that makes it run here (tests/deploy/engine.py:
   containers.conf, a debian:bookworm base image from debootstrap, the API
   service on a socket of this test, health checks run by the test);
2. the images are built when their content changed (a tag per hash of the
   Dockerfiles and the build context), else taken from the cache;
3. `docker-compose up -d` on a free host port (ROOMCAST_HTTP_PORT) with 500 ms
   heartbeats (ROOMCAST_HEARTBEAT_MS), waiting for every container's health;
4. through lb: the demo publisher's events arrive (then it is stopped, so
   that the rooms below get only the test's events); an idle stream stays open on heartbeats past nginx's read
   timeout and then gets an event POSTed through lb; a gateway killed under
   a streaming client, which resumes with Last-Event-ID and gets every event
   exactly once; `--scale gateway=5`, the new gateways healthy and serving;
5. `docker-compose down -v` leaves no container, network or volume.

nginx's read timeout is made 2 s (a copy of deploy/nginx.conf mounted over
the image's, the only change) so that the idle check proves the heartbeats
keep the stream open within seconds rather than a minute.

Exit 77 (skip) when containers cannot run here: not root, a package missing,
podman's service not starting, Debian's mirror unreachable.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

import engine
from harness import SOURCE_DIR, Closed, Skip, SSEStream, http_request, id_gseq, run_tests

COMPOSE_FILE = os.path.join(SOURCE_DIR, "docker-compose.yml")
HEARTBEAT_MS = 500
NGINX_READ_TIMEOUT = "2s"
T0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def event(room, n):
    return {"type": "message.created", "room_id": room, "message": {"text": f"message {n}"}, "n": n}


class Stack:
    """One compose project of this test: docker-compose and podman calls, logs, teardown.

    A subclass changes the compose files, the project's name prefix (engine.py
    removes what a dead run of either left) and the image of each service.
    """

    files = (COMPOSE_FILE,)
    prefix = "roomcastup"
    # service -> image repository, tagged src-<hash of the build context> (engine.source_hash)
    images_of = {"broker": "roomcast", "gateway": "roomcast", "demo": "roomcast", "lb": "roomcast-lb"}
    # lb's proxy_read_timeout in the test (None: deploy/nginx.conf's own)
    nginx_read_timeout = NGINX_READ_TIMEOUT

    def __init__(self, eng, tmp):
        self.eng = eng
        self.project = f"{self.prefix}{os.getpid()}"
        self.port = engine.free_port()
        self.tag = engine.source_hash(SOURCE_DIR)
        self.override = os.path.join(tmp, "docker-compose.test.yml")
        self.write_override(tmp)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("ROOMCAST_", "COMPOSE_", "DOCKER_"))}
        self.env.update({
            "DOCKER_HOST": eng.docker_host,
            "COMPOSE_PROJECT_NAME": self.project,
            "ROOMCAST_HTTP_PORT": str(self.port),
            "ROOMCAST_HEARTBEAT_MS": str(HEARTBEAT_MS),
            # the test's Host is 127.0.0.1:PORT; nginx passes $host (127.0.0.1)
            "ROOMCAST_ALLOWED_HOSTS": "localhost,127.0.0.1",
        })
        self.up = False

    def write_override(self, tmp):
        """The images of this source's hash; nginx.conf with a short read timeout (nginx_read_timeout)."""
        conf_path = None
        if self.nginx_read_timeout:
            with open(os.path.join(SOURCE_DIR, "deploy", "nginx.conf"), encoding="utf-8") as f:
                conf = f.read()
            conf, n = re.subn(r"^(\s*proxy_read_timeout\s+)\S+;", rf"\g<1>{self.nginx_read_timeout};", conf,
                              flags=re.M)
            if n != 1:
                raise AssertionError("deploy/nginx.conf has no one proxy_read_timeout line to shorten")
            conf_path = os.path.join(tmp, "nginx.conf")
            with open(conf_path, "w", encoding="utf-8") as f:
                f.write(conf)
            os.chmod(tmp, 0o755)
            os.chmod(conf_path, 0o644)
        lines = ['version: "2.4"', "services:"]
        for service, repo in self.images_of.items():
            lines += [f"  {service}:", f"    image: {repo}:src-{self.tag}"]
            if service == "lb" and conf_path:
                lines += ["    volumes:", f"      - {conf_path}:/etc/nginx/nginx.conf:ro"]
        with open(self.override, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")

    def compose(self, *args, timeout=120, check=True, capture=True):
        argv = ["docker-compose", "--ansi", "never", "--project-directory", SOURCE_DIR,
                *sum((["-f", f] for f in self.files), []), "-f", self.override, *args]
        r = subprocess.run(argv, env=self.env, cwd=SOURCE_DIR, stdin=subprocess.DEVNULL, text=True,
                           capture_output=capture, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"docker-compose {' '.join(args)} exited {r.returncode}:\n"
                                 f"{(r.stdout or '')[-3000:]}{(r.stderr or '')[-3000:]}")
        return r

    def containers(self, service=None, all_=False):
        """Names of this project's containers (of one service), sorted by their compose number."""
        filters = [f"label=com.docker.compose.project={self.project}"]
        if service:
            filters.append(f"label=com.docker.compose.service={service}")
        out = self.eng.podman("ps", *(["-a"] if all_ else []), *sum((["--filter", f] for f in filters), []),
                              "--format", "{{.Names}}").stdout.split()

        def number(name):
            m = re.search(r"_(\d+)$", name)
            return int(m.group(1)) if m else 0

        return sorted(out, key=lambda n: (n.split("_")[1] if "_" in n else n, number(n)))

    def health(self, name):
        """"running healthy", "running starting", ..., "running" (no health check) or "gone"."""
        r = self.eng.podman("inspect", "--format", "{{.State.Status}} {{.State.Health.Status}}", name, check=False)
        return r.stdout.strip() if r.returncode == 0 else "gone"

    def wait_healthy(self, names, timeout):
        """Every container in names running, and healthy when it has a health check (demo has none)."""
        deadline = time.monotonic() + timeout
        while True:
            states = {n: self.health(n) for n in names}
            if all(s in ("running healthy", "running") for s in states.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not healthy within {timeout}s: {states}")
            time.sleep(0.5)

    def images(self):
        """Builds the images unless this source hash's are there; returns the seconds it took (0: cached)."""
        refs = ", ".join(f"{repo}:src-{self.tag}" for repo in dict.fromkeys(self.images_of.values()))
        if all(self.eng.image_exists(f"{repo}:src-{self.tag}") for repo in self.images_of.values()):
            log(f"images {refs}: cached")
            return 0.0
        log(f"building the images {refs} (docker-compose build)")
        start = time.monotonic()
        r = self.compose("build", timeout=600, check=False)
        took = time.monotonic() - start
        if r.returncode != 0:
            out = r.stdout + r.stderr
            if re.search(r"Temporary failure resolving|Failed to fetch|Could not resolve", out):
                raise Skip(f"the image build cannot reach Debian's mirror:\n{out[-2000:]}")
            raise AssertionError(f"docker-compose build exited {r.returncode} after {took:.0f}s:\n{out[-6000:]}")
        log(f"built in {took:.1f}s")
        for repo in dict.fromkeys(self.images_of.values()):
            self.eng.drop_other_tags(repo, f"src-{self.tag}")
        return took

    def start(self):
        log(f"docker-compose up -d (project {self.project}, lb on :{self.port}, heartbeat {HEARTBEAT_MS} ms)")
        start = time.monotonic()
        self.up = True
        # docker-compose waits for service_healthy without a deadline of its own
        self.compose("up", "-d", "--no-build", timeout=240)
        names = self.containers()
        self.wait_healthy(names, timeout=60)
        took = time.monotonic() - start
        log(f"healthy after {took:.1f}s: {', '.join(names)}")
        return took

    def print_logs(self):
        for name in self.containers(all_=True):
            r = self.eng.podman("logs", "--tail", "60", name, check=False)
            print(f"--- logs of {name} ({self.health(name)}):", file=sys.stderr)
            for line in (r.stdout + r.stderr).splitlines():
                print(f"    {name}| {line}", file=sys.stderr)
        sys.stderr.flush()

    def down(self):
        if self.up:
            self.compose("down", "-v", "--timeout", "5", timeout=120, check=False)
            self.up = False


def read_events(s, count, timeout):
    """count events from s (comments skipped); a stream.reset fails the test."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(got)} of {count} events in {timeout}s: {[d.get('n') for _, d in got]}")
        ev_id, data = s.next_event(left)
        assert data.get("type") != "stream.reset", f"unexpected {data} (id {ev_id})"
        got.append((ev_id, data))
    return got


def post(port, ev, timeout=15):
    """POST ev through lb; returns its id. nginx may first try a dead gateway (2 s connect timeout)."""
    status, _, body = http_request(port, "POST", "/api/v1/events", ev, timeout=timeout)
    assert status == 201, f"POST {ev.get('n')}: {status} {body!r}"
    return json.loads(body)["id"]


def streams_open(stack, name):
    """roomcast_streams_open of one gateway container (its /metrics, read inside it)."""
    r = stack.eng.podman("exec", name, "curl", "-fsS", "--max-time", "3", "http://127.0.0.1:8080/metrics",
                         check=False)
    if r.returncode != 0:
        return None
    m = re.search(r"^roomcast_streams_open (\d+)", r.stdout, flags=re.M)
    return int(m.group(1)) if m else None


def wait_for(what, fn, timeout, interval=0.3):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def check_demo_then_stop_it(stack):
    """The demo publisher's events reach a stream through lb; then it stops, so the rooms below are quiet."""
    s = SSEStream(stack.port, "/api/v1/events?room_id=lobby", timeout=10)
    try:
        assert s.status == 200, f"status {s.status}"
        ev_id, data = s.next_event(10)
    finally:
        s.close()
    log(f"the demo publisher's events stream through lb: {ev_id} {data.get('type')}")
    # it starts once the broker is healthy: a failed publish is a container cut off from the others
    demo = stack.containers("demo")
    r = stack.eng.podman("logs", *demo)
    assert demo and "publish failed" not in r.stdout + r.stderr, f"the demo publisher failed:\n{r.stdout}{r.stderr}"
    # its global events (every 10th) reach every stream: the checks below want only their own
    stack.compose("stop", "-t", "5", "demo", timeout=60)


def check_idle_stream(stack):
    """An idle stream through nginx lives on heartbeats past its read timeout, then gets a POSTed event."""
    room = "up-idle"
    s = SSEStream(stack.port, f"/api/v1/events?room_id={room}", timeout=10)
    try:
        assert s.status == 200, f"status {s.status}"
        idle = 5.0
        pings, deadline = 0, time.monotonic() + idle
        while time.monotonic() < deadline:
            try:
                item = s.next(max(deadline - time.monotonic(), 0.01))
            except TimeoutError:
                break
            except Closed:
                raise AssertionError(f"nginx closed the idle stream after {pings} pings") from None
            assert item[0] != "event", f"an event on an idle room: {item}"
            if item == ("comment", "ping"):
                pings += 1
        # nginx's read timeout is 2 s: without a byte for that long it would have closed the stream
        assert pings >= 5, f"{pings} pings in {idle}s of a {HEARTBEAT_MS} ms heartbeat"
        ev_id = post(stack.port, event(room, 1))
        got_id, data = s.next_event(10)
        assert (got_id, data["n"]) == (ev_id, 1), f"got {got_id} {data}, POSTed {ev_id}"
        log(f"check 1 passed: idle stream through lb open {idle:.0f}s (> nginx read timeout "
            f"{NGINX_READ_TIMEOUT}) on {pings} pings, then got the POSTed event {ev_id}")
    finally:
        s.close()


def check_gateway_killed(stack):
    """A gateway killed under a streaming client: it resumes through lb, every event exactly once."""
    room = "up-failover"
    gateways = stack.containers("gateway")
    s = SSEStream(stack.port, f"/api/v1/events?room_id={room}", timeout=10)
    assert s.status == 200, f"status {s.status}"
    serving = wait_for("the stream on a gateway",
                       lambda: next((g for g in gateways if streams_open(stack, g) == 1), None), timeout=15)
    before = [post(stack.port, event(room, n)) for n in range(1, 6)]
    got = read_events(s, 5, timeout=10)
    assert [i for i, _ in got] == before, f"ids {got} are not the POSTs' {before}"
    last_id = got[-1][0]

    # `docker-compose kill gateway` kills every replica (1.29 has no --index): kill one through the
    # Docker API, as `docker kill NAME` does
    status, body = stack.eng.api("POST", f"/containers/{serving}/kill?signal=KILL")
    assert status == 204, f"kill {serving}: {status} {body!r}"
    log(f"killed {serving} (SIGKILL) under the stream, after {last_id}")
    try:
        item = s.next(10)
        raise AssertionError(f"the stream went on after its gateway died: {item}")
    except Closed:
        pass
    except TimeoutError:
        raise AssertionError("nginx kept the stream of a dead gateway open for 10s") from None
    s.close()

    away = [post(stack.port, event(room, n)) for n in range(6, 11)]
    s = SSEStream(stack.port, f"/api/v1/events?room_id={room}", headers={"Last-Event-ID": last_id}, timeout=15)
    try:
        assert s.status == 200, f"reconnect: status {s.status}"
        live = [post(stack.port, event(room, n)) for n in range(11, 16)]
        got = read_events(s, 10, timeout=20)
        ns = [d["n"] for _, d in got]
        assert ns == list(range(6, 16)), f"events after the resume: {ns}"
        assert [i for i, _ in got] == away + live, f"ids {[i for i, _ in got]} != published {away + live}"
        gseqs = [id_gseq(i) for i, _ in got]
        assert gseqs == sorted(set(gseqs)) and gseqs[0] > id_gseq(last_id), f"ids out of order: {gseqs}"
        try:
            extra = s.next_event(1.0)
            raise AssertionError(f"an event after the last one published: {extra}")
        except TimeoutError:
            pass
    finally:
        s.close()
    log(f"check 2 passed: resumed through lb with Last-Event-ID {last_id}: events 6..15 once, in order, "
        f"no gap, no duplicate")


def check_scale(stack):
    """--scale gateway=5: every gateway healthy, and after restarting lb every one serves streams."""
    start = time.monotonic()
    # the README's command: it also starts what is stopped (the demo publisher): stop that again
    stack.compose("up", "-d", "--no-build", "--scale", "gateway=5", timeout=180)
    stack.compose("stop", "-t", "5", "demo", timeout=60)
    gateways = wait_for("5 gateway containers", lambda: (lambda g: g if len(g) == 5 else None)(
        stack.containers("gateway")), timeout=30)
    stack.wait_healthy(gateways, timeout=60)
    log(f"5 gateways healthy after {time.monotonic() - start:.1f}s: {', '.join(gateways)}")
    # nginx resolved "gateway" when it started: restart it to see all five (as the README says)
    stack.compose("restart", "-t", "5", "lb", timeout=60)
    stack.wait_healthy(stack.containers("lb"), timeout=60)

    room = "up-scale"
    streams = []
    try:
        for _ in range(10):
            streams.append(SSEStream(stack.port, f"/api/v1/events?room_id={room}", timeout=15))
        assert all(s.status == 200 for s in streams), [s.status for s in streams]
        counts = {}

        def spread():
            counts.update({g: streams_open(stack, g) for g in gateways})
            return sum(c or 0 for c in counts.values()) == 10

        wait_for("the 10 streams on the gateways", spread, timeout=15)
        idle = [g for g, c in counts.items() if not c]
        assert not idle, f"gateways without a stream after nginx's round robin over 10: {idle} ({counts})"
        ev_id = post(stack.port, event(room, 1))
        for s in streams:
            got_id, data = s.next_event(10)
            assert (got_id, data["n"]) == (ev_id, 1), f"got {got_id} {data}, POSTed {ev_id}"
    finally:
        for s in streams:
            s.close()
    log(f"check 3 passed: --scale gateway=5: 5 healthy gateways, streams per gateway through lb {counts}, "
        f"each stream got the POSTed event")


def check_down(stack):
    """docker-compose down -v leaves none of the project's containers, networks or volumes."""
    stack.compose("down", "-v", "--timeout", "5", timeout=120)
    stack.up = False
    label = f"label=com.docker.compose.project={stack.project}"
    left = {
        "containers": stack.eng.podman("ps", "-a", "--filter", label, "--format", "{{.Names}}").stdout.split(),
        "networks": [n for n in stack.eng.podman("network", "ls", "--format", "{{.Name}}").stdout.split()
                     if n.startswith(stack.project)],
        "volumes": stack.eng.podman("volume", "ls", "--filter", label, "--format", "{{.Name}}").stdout.split(),
    }
    assert not any(left.values()), f"left after down -v: {left}"
    log("check 4 passed: docker-compose down -v left no container, network or volume of the project")


def test_compose_up():
    with tempfile.TemporaryDirectory(prefix="roomcast-compose-up.") as tmp, engine.Podman(log) as eng:
        stack = Stack(eng, tmp)
        health = threading.Thread(target=eng.run_health_checks, args=(stack.containers, f"{stack.project}_default"),
                                  daemon=True)
        ok = False
        try:
            build = stack.images()
            health.start()
            healthy = stack.start()
            check_demo_then_stop_it(stack)
            check_idle_stream(stack)
            check_gateway_killed(stack)
            check_scale(stack)
            check_down(stack)
            ok = True
            log(f"done: build {build:.1f}s (0 = cached), up to healthy {healthy:.1f}s")
        finally:
            if not ok and stack.up:
                stack.print_logs()
            stack.down()
            eng.stop_health_checks()
            health.join(timeout=15) if health.is_alive() else None


if __name__ == "__main__":
    sys.exit(run_tests([test_compose_up]))
