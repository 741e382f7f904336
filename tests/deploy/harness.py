"""Test harness for the deploy tests: real processes on 127.0.0.1.

A Cluster starts the broker, gateways and Debian's nginx (configured from
deploy/nginx.conf by scripts/render-nginx-conf) in a temp dir, waits for each
to be ready by polling with a deadline, and always stops and reaps every
child when the `with` block ends (SIGTERM, then SIGKILL). Logs go to files in
the temp dir; a failing test prints their tails.

The broker and the gateways listen on port 0 and the harness reads the ports
they bound from their ready log lines; nginx, which has no such line, gets a
port that was free a moment ago (free_port).

SSEStream is a small SSE client on a raw socket (HTTP/1.1, chunked or not),
so a test sees exactly what a browser gets from nginx, including when nginx
closes the stream.

Binaries come from the environment (set by tests/deploy/CMakeLists.txt):
RC_BROKER_BIN, RC_GATEWAY_BIN, RC_CLI_BIN; RC_SOURCE_DIR is the source tree.
Only the Python standard library is used.
"""
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77
SOURCE_DIR = os.environ.get("RC_SOURCE_DIR") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


class Skip(Exception):
    """Raised to skip a whole test file (exit code SKIP)."""


def binary(var):
    path = os.environ.get(var)
    if not path or not os.access(path, os.X_OK):
        raise RuntimeError(f"{var} must name the built binary (got {path!r}); run through ctest")
    return path


def require_nginx():
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)
    if nginx is None:
        raise Skip("nginx is not installed (scripts/install-deps installs nginx-light)")
    return nginx


def wait_until(what, fn, timeout=10.0, interval=0.05):
    """Polls fn() until it returns a true value; raises after timeout seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = fn()
            if v:
                return v
        except OSError as e:
            last = e
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else ""))


def http_request(port, method, path, body=None, headers=None, timeout=5.0):
    """One HTTP request to 127.0.0.1:port; returns (status, headers dict, body bytes)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None and not isinstance(body, (bytes, str)) else body
        h = dict(headers or {})
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


class Proc:
    """A child process with its log file."""

    def __init__(self, name, argv, log_path, env=None):
        self.name, self.argv, self.log_path = name, argv, log_path
        self.log = open(log_path, "wb")
        self.p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                  env=env)
        self.pid = self.p.pid
        self.killed = False  # by the test, on purpose: its exit status is not checked

    def alive(self):
        return self.p.poll() is None

    def check_alive(self):
        if not self.alive():
            raise AssertionError(f"{self.name} exited with {self.p.returncode}:\n{self.tail()}")

    def kill(self, sig=signal.SIGKILL):
        self.killed = True
        if self.alive():
            self.p.send_signal(sig)
        self.p.wait(timeout=10)

    def stop(self, grace=6.0):
        """SIGTERM, then SIGKILL after grace seconds; always reaps.

        Returns a complaint, or None when the process exited 0 on SIGTERM (as
        roomcast's processes and nginx must) or was killed by the test.
        """
        complaint = None
        if self.p.poll() is not None and not self.killed:
            complaint = f"{self.name} had exited by itself with {self.p.returncode}"
        elif self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(timeout=grace)
                if self.p.returncode != 0:
                    complaint = f"{self.name} exited {self.p.returncode} on SIGTERM"
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait(timeout=10)
                complaint = f"{self.name} did not stop within {grace}s of SIGTERM"
        self.log.close()
        return complaint

    def tail(self, n=30):
        if not self.log.closed:
            self.log.flush()
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().decode("utf-8", "replace").splitlines()
        except OSError:
            return ""
        return "\n".join(f"    {self.name}| {line}" for line in lines[-n:])


BROKER_READY_RE = re.compile(r'msg="broker ready" .*\bbus=(\S+) api=(\S+) ')
GATEWAY_READY_RE = re.compile(r'msg="gateway ready" listen=127\.0\.0\.1:(\d+) ')


def ready_line(proc, pattern):
    """The first match of pattern in proc's log, or None (AssertionError once proc exited)."""
    proc.check_alive()
    if not proc.log.closed:
        proc.log.flush()
    with open(proc.log_path, "rb") as f:
        return pattern.search(f.read().decode("utf-8", "replace"))


class Cluster:
    """Processes of one test; use as a context manager."""

    def __init__(self, name):
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"roomcast-{name}.")
        os.chmod(self.dir, 0o755)  # nginx's workers (nobody, when run by root) use temp dirs below it
        self.procs = []
        self.ports = set()
        self.broker_bus = self.broker_api = None
        self.broker_bin = binary("RC_BROKER_BIN")
        self.gateway_bin = binary("RC_GATEWAY_BIN")
        self.cli_bin = binary("RC_CLI_BIN")
        # the children get no ROOMCAST_* from the caller: only what a test passes
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        complaints = []
        for p in reversed(self.procs):
            try:
                c = p.stop()
            except Exception as e:  # keep reaping the others
                c = f"stopping {p.name}: {e}"
            if c:
                complaints.append(c)
        failed = exc_type is not None and exc_type is not Skip
        if failed or complaints:
            print(f"harness: logs of {self.name} ({self.dir}):", file=sys.stderr)
            for p in self.procs:
                print(p.tail(), file=sys.stderr)
        shutil.rmtree(self.dir, ignore_errors=True)
        if complaints and not failed:
            raise AssertionError("; ".join(complaints))
        return False

    def free_port(self):
        """
        A port nothing listens on now (and not handed out before by this
        cluster): for nginx, which cannot report a port 0 it bound.
        """
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in self.ports:
                self.ports.add(port)
                return port

    def spawn(self, name, argv, env=None):
        p = Proc(name, argv, os.path.join(self.dir, f"{name}.log"), env=env or self.env)
        self.procs.append(p)
        return p

    def start_broker(self, *args):
        """A broker on port 0 for --bus and --api; the addresses it bound (its ready line) go to broker_bus/_api."""
        p = self.spawn("broker", [self.broker_bin, "--bus", "tcp://127.0.0.1:0", "--api", "tcp://127.0.0.1:0",
                                  *args])
        m = wait_until("the broker's ready line", lambda: ready_line(p, BROKER_READY_RE), timeout=15)
        self.broker_bus, self.broker_api = m.group(1), m.group(2)
        if self.broker_bus.endswith(":0") or self.broker_api.endswith(":0"):
            raise AssertionError(f"the broker logged port 0, not the ports it bound: {m.group(0)}")

        def up():
            p.check_alive()
            return self.cli("stats", "--timeout-ms", "500", check=False).returncode == 0

        wait_until("the broker to answer stats", up, timeout=15)
        return p

    def start_gateway(self, name, *args):
        """A gateway on port 0 (the port it bound read from its ready line), ready; returns (proc, port)."""
        p = self.spawn(name, [self.gateway_bin, "--listen", "127.0.0.1:0", "--broker-bus", self.broker_bus,
                              "--broker-api", self.broker_api, *args])
        m = wait_until(f"{name}'s ready line", lambda: ready_line(p, GATEWAY_READY_RE), timeout=15)
        port = int(m.group(1))
        if port == 0:
            raise AssertionError(f"{name} logged port 0, not the port it bound: {m.group(0)}")

        def ready():
            p.check_alive()
            return http_request(port, "GET", "/readyz", timeout=1)[0] == 200

        wait_until(f"{name} on :{port} to be ready", ready, timeout=15)
        return p, port

    def start_nginx(self, name, upstream_ports, read_timeout=None):
        """Debian's nginx with deploy/nginx.conf in front of the gateways; returns (proc, port)."""
        nginx = require_nginx()
        port = self.free_port()
        prefix = os.path.join(self.dir, name)
        os.makedirs(prefix)
        argv = [sys.executable, os.path.join(SOURCE_DIR, "scripts", "render-nginx-conf"), "--prefix", prefix,
                "--listen", f"127.0.0.1:{port}"]
        for up in upstream_ports:
            argv += ["--upstream", f"127.0.0.1:{up}"]
        if read_timeout:
            argv += ["--read-timeout", read_timeout]
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=30)
        p = self.spawn(name, [nginx, "-p", prefix, "-e", os.path.join(prefix, "error.log"), "-c",
                              os.path.join(prefix, "nginx.conf"), "-g", "daemon off;"])
        p.error_log = os.path.join(prefix, "error.log")

        def ready():
            p.check_alive()
            return http_request(port, "GET", "/healthz", timeout=1)[0] == 200

        wait_until(f"{name} on :{port} to proxy /healthz", ready, timeout=15)
        return p, port

    def cli(self, *args, stdin=None, check=True):
        r = subprocess.run([self.cli_bin, "--broker-api", self.broker_api, "--broker-bus", self.broker_bus, *args],
                           input=stdin, capture_output=True, text=True, env=self.env, timeout=30)
        if check and r.returncode != 0:
            raise AssertionError(f"roomcast {' '.join(args)} exited {r.returncode}: {r.stderr}")
        return r

    def publish_cli(self, events):
        """Publishes events (dicts) with `roomcast publish --ndjson`; returns their ids."""
        r = self.cli("publish", "--ndjson", stdin="".join(json.dumps(e) + "\n" for e in events))
        ids = r.stdout.split()
        assert len(ids) == len(events), f"expected {len(events)} ids, got {r.stdout!r}"
        return ids


def streams_open(port):
    """The gauge roomcast_streams_open of the gateway on port."""
    status, _, body = http_request(port, "GET", "/metrics", timeout=2)
    assert status == 200, f"/metrics: {status}"
    for line in body.decode().splitlines():
        if line.startswith("roomcast_streams_open "):
            return int(line.split()[1])
    raise AssertionError("no roomcast_streams_open in /metrics")


def id_gseq(event_id):
    """The gseq part of an event id '<epoch>-<gseq>'."""
    return int(event_id.rsplit("-", 1)[1])


class Closed(Exception):
    """The server closed the stream."""


class SSEStream:
    """An SSE stream read from a raw socket, item by item, with deadlines.

    Items: ("event", id, data), ("comment", text), ("retry", value).
    """

    def __init__(self, port, path, headers=None, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        req = [f"GET {path} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Accept: text/event-stream",
               "Cache-Control: no-cache"]
        req += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.sock.sendall(("\r\n".join(req) + "\r\n\r\n").encode())
        self.raw = b""          # bytes from the socket not yet decoded
        self.body = b""         # decoded body not yet parsed into items
        self.items = []         # parsed, not yet returned
        self.eof = False
        self.closed_at = None
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.raw:
            self._recv(deadline)
        head, self.raw = self.raw.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            self.headers[k.strip().lower()] = v.strip()
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        self.chunk_state, self.chunk_left = "size", 0

    def close(self):
        self.sock.close()

    def _recv(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("deadline")
        self.sock.settimeout(left)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("deadline") from None
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            self.closed_at = time.monotonic()
            raise Closed()
        self.raw += data

    def _decode(self):
        """Moves what arrived from raw into body, taking the chunked framing off."""
        if not self.chunked:
            self.body += self.raw
            self.raw = b""
            return
        while True:
            if self.chunk_state == "size":
                if b"\r\n" not in self.raw:
                    return
                line, self.raw = self.raw.split(b"\r\n", 1)
                self.chunk_left = int(line.split(b";")[0], 16)
                if self.chunk_left == 0:  # the last chunk: the response is complete
                    self.eof = True
                    self.closed_at = time.monotonic()
                    return
                self.chunk_state = "data"
            elif self.chunk_state == "data":
                if not self.raw:
                    return
                piece, self.raw = self.raw[:self.chunk_left], self.raw[self.chunk_left:]
                self.body += piece
                self.chunk_left -= len(piece)
                if self.chunk_left == 0:
                    self.chunk_state = "crlf"
            else:
                if len(self.raw) < 2:
                    return
                self.raw = self.raw[2:]
                self.chunk_state = "size"

    def _parse(self):
        while b"\n\n" in self.body:
            block, self.body = self.body.split(b"\n\n", 1)
            ev_id, data = None, []
            for line in block.decode("utf-8").split("\n"):
                if line.startswith(":"):
                    self.items.append(("comment", line[1:].strip()))
                elif line.startswith("id:"):
                    ev_id = line[3:].lstrip(" ")
                elif line.startswith("data:"):
                    data.append(line[5:].lstrip(" "))
                elif line.startswith("retry:"):
                    self.items.append(("retry", line[6:].strip()))
            if data:
                self.items.append(("event", ev_id, "\n".join(data)))

    def next(self, timeout):
        """The next item; raises TimeoutError after timeout s, Closed when the stream ended."""
        deadline = time.monotonic() + timeout
        while True:
            self._decode()
            self._parse()
            if self.items:
                return self.items.pop(0)
            if self.eof:
                raise Closed()
            self._recv(deadline)

    def next_event(self, timeout):
        """The next event (skipping comments); returns (id, parsed data)."""
        deadline = time.monotonic() + timeout
        while True:
            item = self.next(max(deadline - time.monotonic(), 0.001))
            if item[0] == "event":
                return item[1], json.loads(item[2])


def run_tests(tests):
    """Runs test functions in order; prints a summary line; returns the exit code."""
    passed = failed = 0
    try:
        for t in tests:
            name = t.__name__
            start = time.monotonic()
            try:
                t()
            except Skip:
                raise
            except Exception:
                failed += 1
                print(f"FAIL {name} ({time.monotonic() - start:.1f}s)", flush=True)
                traceback.print_exc()
            else:
                passed += 1
                print(f"PASS {name} ({time.monotonic() - start:.1f}s)", flush=True)
    except Skip as e:
        print(f"SKIP: {e}", flush=True)
        return SKIP
    print(f"{passed} passed, {failed} failed", flush=True)
    return 0 if failed == 0 else 1
