"""
nats_util.py - nats-server processes for the --store nats tests.

A test that needs NATS starts its own nats-server (Debian's package) with
JetStream in a temporary directory, on 127.0.0.1 only, client port -1 (the
server picks one; it is read from its log), and stops it by pid; the
harness reaps it at exit whatever happens. A cluster is three servers with
routes between them on ports picked free just before. Without nats-server
the test module exits 77 (skipped) with the reason.

Builds on ../gateway/harness.py, imported as is.
"""

import json
import os
import re
import shutil
import signal
import sys
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "gateway"))

import harness  # noqa: E402  (after the sys.path insert)
from harness import HOST, scaled  # noqa: E402,F401

NATS_BIN = shutil.which("nats-server")


def require_nats_server():
    """Exits 77 (ctest: skipped) with the reason when nats-server is not installed."""
    if NATS_BIN is None:
        sys.stderr.write("SKIP: nats-server is not installed (scripts/install-deps installs it)\n")
        sys.exit(77)


CLIENT_RE = re.compile(r"Listening for client connections on [0-9.]+:([0-9]+)")
MONITOR_RE = re.compile(r"Starting http monitor on [0-9.]+:([0-9]+)")


class _LogOnly:
    """A nats-server in the harness's process list for its log only: the test stops it, not stop_all."""

    def __init__(self, proc):
        self.p, self.name, self.pid, self.argv = proc, proc.name, proc.pid, proc.argv

    def alive(self):
        return False

    def log(self):
        return self.p.log()


class NatsServer:
    """One nats-server with JetStream; .url once ready. A restart keeps its ports and its store."""

    def __init__(self, cluster, name, store, port=-1, cluster_port=None, routes=(), cluster_name="rc"):
        self.cluster, self.name, self.store = cluster, name, store
        self.port, self.cluster_port, self.routes, self.cluster_name = port, cluster_port, list(routes), cluster_name
        self.proc = None
        self.url = None
        self.monitor = None
        self.starts = 0

    def start(self):
        self.starts += 1
        argv = [NATS_BIN, "-js", "-a", HOST, "-p", str(self.port), "-m", "-1", "-sd", self.store,
                "-n", self.name]
        if self.cluster_port is not None:
            argv += ["--cluster", "nats://%s:%d" % (HOST, self.cluster_port), "--cluster_name", self.cluster_name,
                     "--routes", ",".join(self.routes)]
        p = harness.Proc("%s-%d" % (self.name, self.starts), argv, self.cluster.dir)
        self.cluster.procs.append(_LogOnly(p))
        self.proc = p
        found = {}

        def ready():
            if not p.alive():
                raise AssertionError("nats-server %s exited: %s" % (self.name, p.log()[-2000:]))
            log = p.log()
            m, mm = CLIENT_RE.search(log), MONITOR_RE.search(log)
            if m and mm and "Server is ready" in log:
                found["port"], found["monitor"] = int(m.group(1)), int(mm.group(1))
                return True
            return False

        harness.wait_until(ready, scaled(20), "nats-server %s ready" % self.name)
        self.port = found["port"]  # a restart binds the same one
        self.monitor = found["monitor"]
        self.url = "nats://%s:%d" % (HOST, self.port)
        return self

    def kill(self):
        """SIGKILL and reap."""
        if self.proc is not None:
            self.proc.kill()

    def stop(self):
        """SIGTERM (nats-server exits 1 on it), SIGKILL if it does not go; reaped either way."""
        if self.proc is not None and self.proc.alive():
            self.proc.signal(signal.SIGTERM)
            if self.proc.wait(scaled(10)) is None:
                self.proc.kill()

    def jsz(self, query="streams=true&accounts=true"):
        with urllib.request.urlopen("http://%s:%d/jsz?%s" % (HOST, self.monitor, query), timeout=scaled(5)) as r:
            return json.loads(r.read())


def start_single(cluster):
    return NatsServer(cluster, "nats-1", os.path.join(cluster.dir, "nats-1")).start()


def start_cluster(cluster, n=3):
    """n servers with routes to each other; returns them once each logged ready."""
    cports = [harness.free_port() for _ in range(n)]
    servers = []
    for i in range(n):
        routes = ["nats://%s:%d" % (HOST, cports[j]) for j in range(n) if j != i]
        servers.append(NatsServer(cluster, "nats-%d" % (i + 1), os.path.join(cluster.dir, "nats-%d" % (i + 1)),
                                  cluster_port=cports[i], routes=routes))
    for s in servers:
        s.start()
    return servers


def stream_leader(servers, stream):
    """The name of the server that leads the stream (from any live server's /jsz), or None."""
    for s in servers:
        if s.proc is None or not s.proc.alive():
            continue
        try:
            j = s.jsz()
        except OSError:
            continue
        for acc in j.get("account_details") or []:
            for st in acc.get("stream_detail") or []:
                if st.get("name") == stream:
                    leader = (st.get("cluster") or {}).get("leader")
                    if leader:
                        return leader
    return None


def meta_leader(servers):
    """The name of the JetStream metadata leader (from any live server's /jsz), or None."""
    for s in servers:
        if s.proc is None or not s.proc.alive():
            continue
        try:
            leader = (s.jsz("").get("meta_cluster") or {}).get("leader")
        except OSError:
            continue
        if leader:
            return leader
    return None


class NatsTest(harness.GatewayTest):
    """GatewayTest plus the nats-servers it started, stopped after the broker and gateways."""

    def setUp(self):
        super().setUp()
        self.nats = []

    def tearDown(self):
        try:
            super().tearDown()
        finally:
            for s in self.nats:
                s.stop()
