"""
harness.py - support for the gateway integration tests.

Starts the real roomcast-broker and roomcast-gateway binaries on 127.0.0.1
port 0 and reads the ports they bound from their ready log lines (no "free"
port picked in advance that someone else may take first), waits for
readiness by polling with a deadline, captures each
process's stderr to a file (printed when a test fails), and always stops and
reaps every child. Also: a raw-socket SSE client that parses the stream
incrementally, and small HTTP helpers.

The binaries come from the environment (ctest sets them):
  ROOMCAST_BROKER_BIN, ROOMCAST_GATEWAY_BIN, ROOMCAST_CLI_BIN
ROOMCAST_TEST_TIME_SCALE multiplies every deadline; it defaults to 3 when the
gateway binary is built with AddressSanitizer, else 1. A process that does
not exit promptly on SIGTERM at teardown fails the test, with its stacks in
the log (gdb, when installed). ROOMCAST_TEST_SHOW_LOGS=1 prints the process
logs of passing tests too.

Only the Python standard library; all traffic goes to 127.0.0.1.
"""

import atexit
import collections
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
import threading
import time
import unittest

HOST = "127.0.0.1"


def _binary(var):
    path = os.environ.get(var)
    if not path:
        sys.stderr.write("harness: %s is not set (ctest sets it; see CMakeLists.txt)\n" % var)
        sys.exit(2)
    if not os.access(path, os.X_OK):
        sys.stderr.write("harness: %s=%s is not an executable\n" % (var, path))
        sys.exit(2)
    return path


BROKER_BIN = _binary("ROOMCAST_BROKER_BIN")
GATEWAY_BIN = _binary("ROOMCAST_GATEWAY_BIN")
CLI_BIN = _binary("ROOMCAST_CLI_BIN")


def _detect_sanitizer(path):
    try:
        with open(path, "rb") as f:
            return b"__asan_init" in f.read()
    except OSError:
        return False


SANITIZED = _detect_sanitizer(GATEWAY_BIN)
TIME_SCALE = float(os.environ.get("ROOMCAST_TEST_TIME_SCALE") or (3.0 if SANITIZED else 1.0))


def scaled(seconds):
    """A deadline in seconds, stretched for slow (sanitizer) builds."""
    return seconds * TIME_SCALE


# ---------------------------------------------------------------------------
# ports and processes
# ---------------------------------------------------------------------------

_ports_handed_out = set()


def free_port():
    """
    A TCP port on 127.0.0.1 that was free a moment ago (bind port 0, close),
    and not one this process handed out before: the kernel can give the
    port it just released to the next bind. Only for an address nothing
    should listen on (a broker that is not there): roomcast's binaries are
    started on port 0 (start_broker, start_gateway).
    """
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((HOST, 0))
            port = s.getsockname()[1]
        if port not in _ports_handed_out:
            _ports_handed_out.add(port)
            return port
    raise RuntimeError("no free port that was not handed out already")


_live_procs = []


def _reap_all():
    """atexit: nothing outlives the test run."""
    for p in list(_live_procs):
        p.kill()


atexit.register(_reap_all)


def _child_env():
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMCAST_")}
    # a leak or UB report makes the process exit non-zero: tests check exit codes
    env.setdefault("ASAN_OPTIONS", "detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    return env


class Proc:
    """A child process whose stdout and stderr go to a log file."""

    def __init__(self, name, argv, logdir, env=None):
        self.name = name
        self.argv = argv
        self.log_path = os.path.join(logdir, name + ".log")
        self._log = open(self.log_path, "wb")
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                      env=dict(_child_env(), **(env or {})), close_fds=True)
        self.pid = self.popen.pid
        self.returncode = None
        _live_procs.append(self)

    def alive(self):
        return self.popen.poll() is None

    def signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Waits up to timeout seconds; returns the exit code or None."""
        try:
            self.returncode = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        self._forget()
        return self.returncode

    def wait_exit(self, timeout):
        """Waits for an exit already asked for (a signal); on timeout records the stacks. Exit code or None."""
        rc = self.wait(timeout)
        if rc is None:
            self.dump_stacks("did not exit within %.1fs" % timeout)
        return rc

    def stop(self, timeout=None):
        """SIGTERM, wait, SIGKILL if it does not go. Returns the exit code."""
        if timeout is None:
            timeout = scaled(5)
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                self.dump_stacks("did not exit within %.1fs of SIGTERM" % timeout)
                self.kill()
                return None
        self.returncode = self.popen.wait()
        self._forget()
        return self.returncode

    def dump_stacks(self, why):
        """Appends every thread's stack (gdb, when installed) to the log: for a process that hangs."""
        gdb = shutil.which("gdb")
        if gdb is None or self.popen.poll() is not None:
            return
        try:
            out = subprocess.run([gdb, "-batch", "-nx", "-p", str(self.pid), "-ex", "thread apply all bt"],
                                 capture_output=True, text=True, timeout=60).stdout
        except (OSError, subprocess.SubprocessError) as e:
            out = "gdb failed: %r" % (e,)
        with open(self.log_path, "a") as f:
            f.write("\n[harness] %s %s; stacks:\n%s\n" % (self.name, why, out))

    def kill(self):
        if self.popen.poll() is None:
            self.popen.kill()
        self.returncode = self.popen.wait()
        self._forget()

    def _forget(self):
        if self in _live_procs:
            _live_procs.remove(self)
        if not self._log.closed:
            self._log.close()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def fd_count(self):
        return len(os.listdir("/proc/%d/fd" % self.pid))


class Broker:
    def __init__(self, proc, bus, api):
        self.proc, self.bus, self.api = proc, bus, api


class Gateway:
    def __init__(self, proc, port, bus, api):
        self.proc, self.port, self.bus, self.api = proc, port, bus, api


class Cluster:
    """A broker and gateways for one test, all in one temporary directory."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="roomcast-gwtest-")
        self.procs = []
        self.broker = None
        self.gateways = []
        self._n = 0

    def _start(self, kind, argv, env=None):
        self._n += 1
        p = Proc("%02d-%s" % (self._n, kind), argv, self.dir, env)
        self.procs.append(p)
        return p

    def start_broker(self, *extra, bus=None, api=None):
        """
        Starts a broker (by default on port 0 for --bus and --api) and waits
        for its ready line; .bus and .api are the addresses it logged as
        bound, so a restart can be given the same ones.
        """
        argv = [BROKER_BIN, "--bus", bus or "tcp://%s:0" % HOST, "--api", api or "tcp://%s:0" % HOST]
        p = self._start("broker", argv + list(extra))
        bus, api = wait_broker(p)
        self.broker = Broker(p, bus, api)
        return self.broker

    def start_gateway(self, *extra, broker=None, bus=None, api=None, listen=None, ready=True, env=None,
                      wrap=None):
        """
        Starts a gateway with extra options (and env: extra environment
        variables) on listen (default port 0), reads the port it bound from
        its ready lines (every worker's, with --workers), then waits for
        /readyz 200 on it (ready=False: /healthz 200). wrap: a command line
        that runs it (e.g. prlimit ... --), the same process.
        """
        broker = broker or self.broker
        bus = bus or broker.bus
        api = api or broker.api
        argv = list(wrap or []) + [GATEWAY_BIN, "--listen", listen or "%s:0" % HOST, "--broker-bus", bus,
                                   "--broker-api", api]
        argv += list(extra)
        workers = 1
        for i, a in enumerate(extra):
            if a == "--workers":
                workers = int(extra[i + 1])
            elif a.startswith("--workers="):
                workers = int(a.split("=", 1)[1])
        p = self._start("gateway", argv, env)
        port = wait_gateway_listening(p, workers)
        gw = Gateway(p, port, bus, api)
        self.gateways.append(gw)
        wait_http(gw, "/readyz" if ready else "/healthz")
        return gw

    def cli(self, *args, stdin=None, timeout=None):
        """Runs the roomcast CLI against the broker; returns CompletedProcess (text)."""
        argv = [CLI_BIN] + list(args) + ["--broker-bus", self.broker.bus, "--broker-api", self.broker.api]
        return subprocess.run(argv, input=stdin, capture_output=True, text=True, env=_child_env(),
                              timeout=timeout or scaled(20))

    def stop_all(self):
        """Stops every child still running; returns [(proc, exit code)] for those."""
        out = []
        # gateways first: a gateway stopping while its broker is still up is the normal order
        for p in reversed(self.procs):
            if p.alive():
                out.append((p, p.stop()))
        return out

    def logs(self):
        parts = []
        for p in self.procs:
            parts.append("----- %s (pid %d): %s\n%s" % (p.name, p.pid, " ".join(p.argv), p.log()))
        return "\n".join(parts)

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(pred, timeout, what, interval=0.02):
    """Polls pred() until it returns a true value or the deadline passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = pred()
            if v:
                return v
        except (OSError, http.client.HTTPException, ValueError) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            raise AssertionError("timed out after %.1fs waiting for %s (last error: %r)" % (timeout, what, last_exc))
        time.sleep(interval)


BROKER_READY_RE = re.compile(r'msg="broker ready" .*\bbus=(\S+) api=(\S+) ')
GATEWAY_READY_RE = re.compile(r'msg="gateway ready" listen=(\S+) worker=(\d+) ')


def url_port(url):
    """'tcp://127.0.0.1:7410' or '127.0.0.1:8080' -> 7410 or 8080 (ValueError when there is none)."""
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


def wait_broker(proc):
    """
    The broker is ready once it logs 'broker ready' (after its bus and api
    listen). Returns the (bus, api) URLs of that line: the bound ones, which
    a broker given port 0 must show with the port it got.
    """
    def ready():
        if not proc.alive():
            raise AssertionError("broker exited with %s:\n%s" % (proc.popen.poll(), proc.log()))
        return BROKER_READY_RE.search(proc.log())
    m = wait_until(ready, scaled(10), "the broker to log 'broker ready'")
    bus, api = m.group(1), m.group(2)
    if url_port(bus) == 0 or url_port(api) == 0:
        raise AssertionError("the broker logged port 0 (not the port it bound): bus=%s api=%s" % (bus, api))
    return bus, api


def wait_gateway_listening(proc, workers=1):
    """
    Waits for the ready line of each of the gateway's `workers` loops and
    returns the port they logged (listen=HOST:PORT): the one bound, the same
    for every loop, never 0.
    """
    def ready():
        if not proc.alive():
            raise AssertionError("gateway exited with %s:\n%s" % (proc.popen.poll(), proc.log()))
        lines = GATEWAY_READY_RE.findall(proc.log())
        return lines if len(lines) >= workers else None
    lines = wait_until(ready, scaled(10), "%d gateway ready line(s)" % workers)
    ports = {url_port(listen) for listen, _ in lines}
    if len(ports) != 1 or 0 in ports:
        raise AssertionError("the gateway's loops logged listen=%s, expected one bound port" %
                             sorted(listen for listen, _ in lines))
    return ports.pop()


def wait_http(gw, path):
    def ready():
        if not gw.proc.alive():
            raise AssertionError("gateway exited with %s:\n%s" % (gw.proc.popen.poll(), gw.proc.log()))
        return request(gw.port, "GET", path, timeout=1).status == 200
    wait_until(ready, scaled(10), "GET %s on 127.0.0.1:%d to answer 200" % (path, gw.port), interval=0.05)


# ---------------------------------------------------------------------------
# HTTP helpers
# ---------------------------------------------------------------------------

class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers  # lower-case name -> value (last wins); see header_list
        self.header_list = []
        self.body = body

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def __repr__(self):
        return "Response(%d, %r, %r)" % (self.status, self.headers, self.body[:300])


def request(port, method, path, body=None, headers=None, timeout=None):
    """One request on a fresh connection (http.client). Returns a Response."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout or scaled(10))
    try:
        if isinstance(body, str):
            body = body.encode("utf-8")
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        data = r.read()
        resp = Response(r.status, {k.lower(): v for k, v in r.getheaders()}, data)
        resp.header_list = [(k.lower(), v) for k, v in r.getheaders()]
        return resp
    finally:
        conn.close()


def post_json(port, obj, headers=None, path="/api/v1/events", raw=None, content_type="application/json",
              timeout=None):
    """POSTs obj as JSON (or raw bytes); returns a Response with .json() available."""
    h = {}
    if content_type is not None:
        h["Content-Type"] = content_type
    h.update(headers or {})
    body = raw if raw is not None else json.dumps(obj, separators=(",", ":")).encode("utf-8")
    return request(port, "POST", path, body=body, headers=h, timeout=timeout)


def publish(port, events, headers=None):
    """POSTs an event (dict) or a list of events; asserts 201; returns the id or the list of ids."""
    r = post_json(port, events, headers=headers)
    if r.status != 201:
        raise AssertionError("POST /api/v1/events: expected 201, got %r" % (r,))
    body = r.json()
    return body["ids"] if isinstance(events, list) else body["id"]


def publish_concurrently(port, publishers, rounds, batch):
    """
    `publishers` threads POST at once, thread k the list batch(k, i) for each
    i in range(rounds). Returns [(id, event)] of everything published, in id
    (gseq) order; raises AssertionError if a POST failed or a thread hung.
    """
    published, lock, errors = [], threading.Lock(), []

    def run(k):
        try:
            for i in range(rounds):
                events = batch(k, i)
                ids = publish(port, events)
                with lock:
                    published.extend(zip(ids, events))
        except Exception as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(publishers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(scaled(30))
    if errors or any(t.is_alive() for t in threads):
        raise AssertionError("concurrent publishers failed: %r" % (errors or "a thread hung",))
    published.sort(key=lambda p: gseq(p[0]))
    return published


ID_RE = re.compile(r"^([0-9a-f]+)-([0-9]+)$")


def parse_id(event_id):
    """'6f1c2a9e-1042' -> ('6f1c2a9e', 1042); AssertionError when malformed."""
    m = ID_RE.match(event_id or "")
    if not m:
        raise AssertionError("not an event id (<hex epoch>-<gseq>): %r" % (event_id,))
    return m.group(1), int(m.group(2))


def gseq(event_id):
    return parse_id(event_id)[1]


def get_metrics(port):
    """GET /metrics parsed into {'name{labels}': value}."""
    r = request(port, "GET", "/metrics")
    if r.status != 200:
        raise AssertionError("GET /metrics: %r" % (r,))
    out = {}
    for line in r.body.decode("utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        out[name] = float(value)
    return out


class RawHTTP:
    """A raw HTTP/1.1 connection: write bytes, read responses one by one (Content-Length bodies)."""

    def __init__(self, port, timeout=None):
        self.sock = socket.create_connection((HOST, port), timeout=timeout or scaled(10))
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def read_response(self):
        """Returns a Response, or raises EOFError when the peer closed first."""
        for _ in range(10000):
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            self._fill()
        else:
            raise AssertionError("no response head")
        head, self.buf = self.buf[:i].decode("latin-1"), self.buf[i + 4:]
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise AssertionError("bad status line %r" % lines[0])
        headers, hlist = {}, []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
            hlist.append((k.strip().lower(), v.strip()))
        n = int(headers.get("content-length", "0"))
        for _ in range(100000):
            if len(self.buf) >= n:
                break
            self._fill()
        body, self.buf = self.buf[:n], self.buf[n:]
        r = Response(int(parts[1]), headers, body)
        r.header_list = hlist
        return r

    def at_eof(self, timeout):
        """True when the peer closes (EOF or reset) within timeout with nothing more to read."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except socket.timeout:
            return False
        self.buf += data
        return data == b""

    def close(self):
        self.sock.close()


def http_request_bytes(method, path, body=b"", headers=None, keep_alive=True):
    """Serializes one request (for pipelining tests)."""
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"]
    for k, v in (headers or {}).items():
        lines.append("%s: %s" % (k, v))
    if body or method in ("POST", "PUT"):
        lines.append("Content-Length: %d" % len(body))
    if not keep_alive:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


# ---------------------------------------------------------------------------
# SSE client
# ---------------------------------------------------------------------------

SSEEvent = collections.namedtuple("SSEEvent", "id data t")      # t: time.monotonic() at arrival
SSEComment = collections.namedtuple("SSEComment", "text t")


class SSEClient:
    """
    A subscriber over a raw socket: sends GET path with optional headers, reads
    the response head, then parses the SSE body incrementally. Items are
    SSEEvent (id, data) and SSEComment (': ping' -> text 'ping'), each stamped
    with its arrival time. body_raw keeps every body byte received.
    """

    def __init__(self, port, path="/api/v1/events", headers=None, rcvbuf=None, connect_timeout=None,
                 send_request=True):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(connect_timeout or scaled(10))
        self.sock.connect((HOST, port))
        self.path = path
        self.status = None
        self.headers = {}
        self.head_raw = b""
        self.body_raw = bytearray()
        self.eof = False
        self.reset = False  # the connection ended with a reset rather than a FIN
        self.items = collections.deque()
        self.retry = None
        self.retry_t = None  # arrival time of the preamble's 'retry:' line
        self.last_id = None
        self._pending = b""
        self._head_done = False
        self._ev_id = None
        self._ev_data = None
        self._keep_raw = True
        if send_request:
            self.send_request(headers)

    def send_request(self, headers=None):
        lines = ["GET %s HTTP/1.1" % self.path, "Host: 127.0.0.1", "Accept: text/event-stream"]
        for k, v in (headers or {}).items():
            lines.append("%s: %s" % (k, v))
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))

    def keep_raw(self, keep):
        """Whether body_raw accumulates (turn off for large volumes)."""
        self._keep_raw = keep

    # -- reading --

    def _recv(self, deadline):
        """Reads once; returns False on timeout. Sets eof on EOF/reset."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            return False
        except (ConnectionResetError, BrokenPipeError):
            self.eof = True
            self.reset = True
            return True
        now = time.monotonic()
        if not data:
            self.eof = True
            return True
        self._feed(data, now)
        return True

    def _feed(self, data, now):
        if not self._head_done:
            self._pending += data
            i = self._pending.find(b"\r\n\r\n")
            if i < 0:
                if len(self._pending) > 65536:
                    raise AssertionError("response head too long")
                return
            self.head_raw = self._pending[:i + 4]
            data = self._pending[i + 4:]
            self._pending = b""
            self._head_done = True
            lines = self.head_raw.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ", 2)
            self.status = int(parts[1])
            for line in lines[1:]:
                if line:
                    k, _, v = line.partition(":")
                    self.headers[k.strip().lower()] = v.strip()
            if self.status != 200:
                # an error answer: keep its body as-is
                self.body_raw += data
                return
        if self._keep_raw:
            self.body_raw += data
        if self.status != 200:
            return
        buf = self._pending + data
        lines = buf.split(b"\n")
        self._pending = lines.pop()  # incomplete last line
        for line in lines:
            self._line(line.rstrip(b"\r").decode("utf-8"), now)

    def _line(self, line, now):
        if line == "":
            if self._ev_data is not None:
                self.items.append(SSEEvent(self._ev_id, self._ev_data, now))
            self._ev_id = None
            self._ev_data = None
            return
        if line.startswith(":"):
            self.items.append(SSEComment(line[1:].lstrip(" "), now))
            return
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "id":
            self._ev_id = value
            self.last_id = value
        elif field == "data":
            self._ev_data = value if self._ev_data is None else self._ev_data + "\n" + value
        elif field == "retry":
            self.retry = int(value)
            self.retry_t = now

    def read_head(self, timeout=None):
        """Waits for the response head; returns the status."""
        deadline = time.monotonic() + (timeout or scaled(10))
        while not self._head_done and not self.eof:
            if not self._recv(deadline):
                raise AssertionError("no response head for GET %s within the deadline" % self.path)
        if not self._head_done:
            raise AssertionError("connection closed before a response head (GET %s)" % self.path)
        return self.status

    def read_body_bytes(self, n, timeout=None):
        """Waits until at least n body bytes arrived (or EOF); returns body_raw."""
        deadline = time.monotonic() + (timeout or scaled(10))
        self.read_head(timeout)
        while len(self.body_raw) < n and not self.eof:
            if not self._recv(deadline):
                break
        return bytes(self.body_raw)

    def open(self, timeout=None):
        """Reads the head and the preamble (': connected', 'retry:'); asserts 200. Returns self."""
        status = self.read_head(timeout)
        if status != 200:
            raise AssertionError("GET %s: expected 200, got %d: %r" % (self.path, status, bytes(self.body_raw)))
        deadline = time.monotonic() + (timeout or scaled(10))
        while self.retry is None and not self.eof:
            if not self._recv(deadline):
                raise AssertionError("no preamble on GET %s" % self.path)
        # the ': connected' comment is part of the preamble, not a heartbeat
        while self.items and isinstance(self.items[0], SSEComment) and self.items[0].text == "connected":
            self.items.popleft()
        return self

    def next_item(self, timeout):
        """The next event or comment, or None on timeout or EOF."""
        deadline = time.monotonic() + timeout
        while not self.items:
            if self.eof or not self._recv(deadline):
                return None
        return self.items.popleft()

    def collect(self, seconds):
        """Everything that arrives during the next `seconds` (or until EOF)."""
        out = []
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            item = self.next_item(max(0.0, deadline - time.monotonic()))
            if item is None:
                if self.eof:
                    break
                continue
            out.append(item)
        while self.items:
            out.append(self.items.popleft())
        return out

    def events(self, n, timeout=None):
        """Exactly the next n events (comments skipped); AssertionError with what came on timeout."""
        out = []
        deadline = time.monotonic() + (timeout or scaled(10))
        while len(out) < n:
            item = self.next_item(max(0.0, deadline - time.monotonic()))
            if item is None:
                raise AssertionError("GET %s: expected %d events, got %d%s: %r" % (
                    self.path, n, len(out), " (EOF)" if self.eof else "", [(e.id, e.data[:80]) for e in out]))
            if isinstance(item, SSEEvent):
                out.append(item)
        return out

    def events_until(self, last_id, timeout=None, max_events=1000000):
        """Events up to and including the one with id last_id."""
        out = []
        deadline = time.monotonic() + (timeout or scaled(10))
        while len(out) < max_events:
            item = self.next_item(max(0.0, deadline - time.monotonic()))
            if item is None:
                raise AssertionError("GET %s: no event %s within the deadline%s; got %r" % (
                    self.path, last_id, " (EOF)" if self.eof else "", [(e.id, e.data[:60]) for e in out][-20:]))
            if isinstance(item, SSEEvent):
                out.append(item)
                if item.id == last_id:
                    return out
        raise AssertionError("more than %d events before %s" % (max_events, last_id))

    def wait_eof(self, timeout):
        """Reads (and parses) until EOF or reset; True if it came within timeout."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            if not self._recv(deadline):
                return False
        return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---------------------------------------------------------------------------
# test case base
# ---------------------------------------------------------------------------

class GatewayTest(unittest.TestCase):
    """
    Each test gets self.cluster (nothing started). tearDown stops every child
    with SIGTERM and fails the test if one exits non-zero (a sanitizer report
    or a crash); one that does not exit in time is killed (see tearDown). The
    logs are printed when the test fails or errors.
    """

    def setUp(self):
        self.cluster = Cluster()
        self._clients = []

    def sse(self, gw, path="/api/v1/events", headers=None, open=True, **kw):
        c = SSEClient(gw.port, path, headers=headers, **kw)
        self._clients.append(c)
        if open:
            c.open()
        return c

    def tearDown(self):
        for c in self._clients:
            c.close()
        bad = []
        for p, rc in self.cluster.stop_all():
            if rc is None:
                # stop() recorded the stacks in the log, which a failure prints
                bad.append("%s did not exit within the deadline after SIGTERM" % p.name)
            elif rc != 0:
                bad.append("%s exited with %s on SIGTERM" % (p.name, rc))
        if bad:
            self.fail("; ".join(bad))

    def run(self, result=None):
        if result is None:
            result = self.defaultTestResult()
        before = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
        try:
            return super().run(result)
        finally:
            cluster = getattr(self, "cluster", None)
            if cluster is not None:
                for p in cluster.procs:
                    if p.alive():
                        p.kill()
                after = len(result.failures) + len(result.errors) + len(getattr(result, "unexpectedSuccesses", []))
                if after > before or os.environ.get("ROOMCAST_TEST_SHOW_LOGS"):
                    sys.stderr.write("\n===== process logs for %s (%s) =====\n%s\n===== end =====\n" % (
                        self.id(), cluster.dir, cluster.logs()))
                cluster.remove()

    # -- assertions shared by the test files --

    def assertExitsOnSignal(self, proc, timeout, code=0, waited=None):
        """
        proc (already signalled) exits with code within timeout (waited: the
        seconds already waited, for the message); a hang fails with its stacks.
        """
        rc = proc.wait_exit(timeout)
        if rc is None:
            proc.kill()
            waited = (waited or 0) + timeout
            self.fail("%s did not exit within %.1fs of the signal" % (proc.name, waited))
        self.assertEqual(rc, code, "%s exit code (a sanitizer report makes it non-zero)" % proc.name)
        return rc

    def assertJSONError(self, resp, status, code=None, message_has=None):
        self.assertEqual(resp.status, status, resp)
        self.assertTrue(resp.headers.get("content-type", "").startswith("application/json"), resp)
        body = resp.json()
        self.assertEqual(set(body.keys()), {"error"}, body)
        err = body["error"]
        self.assertIsInstance(err.get("code"), str, body)
        self.assertTrue(err["code"], body)
        self.assertIsInstance(err.get("message"), str, body)
        self.assertTrue(err["message"], body)
        if code is not None:
            self.assertEqual(err["code"], code, body)
        if message_has is not None:
            self.assertIn(message_has, err["message"], body)
        return err


def main():
    unittest.main(verbosity=2)
