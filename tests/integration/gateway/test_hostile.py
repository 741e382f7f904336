"""
Hostile clients against the gateway (issue 14): a client that pipelines
requests and never reads the answers, Expect: 100-continue, the Host check,
and the request limits agreeing with what a stream URL may hold. Memory is
read from /proc; every loop is bounded in count and time.
"""

import socket
import time

import harness
from harness import GatewayTest, RawHTTP, http_request_bytes, scaled


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


def send_for(sock, data, seconds):
    """Sends data again and again for at most `seconds` (or until the peer stops taking it); returns bytes sent."""
    sock.setblocking(False)
    sent = 0
    view = memoryview(data)
    off = 0
    deadline = time.monotonic() + seconds
    stalled_since = None
    while time.monotonic() < deadline:
        try:
            n = sock.send(view[off:])
        except BlockingIOError:
            if stalled_since is None:
                stalled_since = time.monotonic()
            elif time.monotonic() - stalled_since > 0.5:
                break  # the gateway stopped reading
            time.sleep(0.01)
            continue
        except (ConnectionResetError, BrokenPipeError):
            break
        stalled_since = None
        sent += n
        off = (off + n) % len(data)
    return sent


class PipelineTest(GatewayTest):
    def test_unread_pipelined_answers_are_bounded_and_time_out(self):
        # 100,000 pipelined GET /metrics (~2.9 MB) from a client that never
        # reads: the gateway stops reading once its unsent answers pass the
        # bound, and closes the connection after --idle-timeout-ms
        self.cluster.start_broker()
        gw = self.cluster.start_gateway("--idle-timeout-ms", "1500")
        pid = gw.proc.popen.pid
        before = rss_kib(pid)
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.connect((harness.HOST, gw.port))
        self.addCleanup(s.close)
        sent = send_for(s, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n" * 100, scaled(4))
        grown = rss_kib(pid) - before
        self.assertLess(grown, 64 * 1024, "the gateway grew by %d KiB for %d pipelined bytes" % (grown, sent))
        # the gateway is still fine for others
        self.assertEqual(harness.request(gw.port, "GET", "/healthz").status, 200)
        # the connection that never reads is closed (counted on the gateway:
        # reading from the client would read the answers)
        harness.wait_until(lambda: harness.get_metrics(gw.port)["roomcast_connections_open"] <= 1,
                           scaled(10), "the connection that does not read its answers to be closed")
        s.setblocking(True)
        s.settimeout(scaled(10))
        with self.assertRaises((ConnectionResetError, BrokenPipeError)):
            for _ in range(100000):
                if s.recv(1 << 20) == b"":
                    raise ConnectionResetError("EOF")

def read_until(sock, marker, timeout):
    """Reads until marker is in what came (or timeout); returns what came."""
    sock.settimeout(timeout)
    got = b""
    deadline = time.monotonic() + timeout
    while marker not in got and time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        got += chunk
    return got


class ExpectContinueTest(GatewayTest):
    """curl and libcurl send Expect: 100-continue for larger bodies and wait ~1 s for an answer."""

    def setUp(self):
        super().setUp()
        self.cluster.start_broker()
        self.gw = self.cluster.start_gateway("--publish-token", "sekret")

    def head(self, token="sekret", ctype="application/json", length=30):
        return ("POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\n"
                "Authorization: Bearer %s\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n"
                % (ctype, token, length)).encode()

    def test_continue_then_the_answer(self):
        body = b'{"type":"a","room_id":"expect"}'
        s = socket.create_connection((harness.HOST, self.gw.port))
        self.addCleanup(s.close)
        s.sendall(self.head(length=len(body)))
        # the body is not sent until the gateway says so (well before curl's 1 s wait)
        got = read_until(s, b"\r\n\r\n", 0.5)
        self.assertTrue(got.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), got)
        s.sendall(body)
        got = read_until(s, b"}", scaled(5))
        self.assertIn(b"HTTP/1.1 201 Created", got)
        self.assertIn(b'"id"', got)

    def test_refused_at_once_without_the_body(self):
        for head, status in ((self.head(token="wrong"), b"401"), (self.head(ctype="text/plain"), b"415"),
                             (self.head(length=64 * 1024 * 1024), b"413")):
            s = socket.create_connection((harness.HOST, self.gw.port))
            self.addCleanup(s.close)
            s.sendall(head)
            got = read_until(s, b"}}", 0.5)
            self.assertTrue(got.startswith(b"HTTP/1.1 " + status), (status, got))
            self.assertNotIn(b"100 Continue", got)
            # the body is never read: the connection closes after the answer
            self.assertEqual(read_until(s, b"never", scaled(5)), b"")

    def test_other_requests_with_expect_are_continued(self):
        s = socket.create_connection((harness.HOST, self.gw.port))
        self.addCleanup(s.close)
        s.sendall(b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
        got = read_until(s, b"\r\n\r\n", 0.5)
        self.assertTrue(got.startswith(b"HTTP/1.1 100 Continue"), got)
        s.sendall(b"{}")
        self.assertIn(b"405", read_until(s, b"}}", scaled(5)))


class LimitsTest(GatewayTest):
    def setUp(self):
        super().setUp()
        self.cluster.start_broker()

    def test_max_conns_fits_the_descriptor_limit(self):
        # with 256 descriptors, the default --max-conns leaves a reserve: a
        # client past it gets the 503 of --max-conns, not a reset
        gw = self.cluster.start_gateway(wrap=["prlimit", "--nofile=256:256", "--"])
        self.assertIn("max_conns=128", gw.proc.log())
        socks, answered, silent = [], 0, 0
        try:
            for _ in range(200):
                s = socket.create_connection((harness.HOST, gw.port), timeout=scaled(5))
                socks.append(s)
            for s in socks:
                s.settimeout(0.05)
                try:
                    got = s.recv(4096)
                except socket.timeout:
                    silent += 1  # open, waiting for a request
                    continue
                except ConnectionResetError:
                    got = b""
                self.assertTrue(got.startswith(b"HTTP/1.1 503"), "an answer or nothing, never a reset: %r" % got)
                self.assertIn(b"too_many_connections", got)
                answered += 1
        finally:
            for s in socks:
                s.close()
        self.assertGreaterEqual(answered, 50)
        self.assertLessEqual(silent, 128)
        # the closed connections leave the gateway (until then /metrics would get the 503 too)
        got = {}

        def metrics():
            try:
                got.update(harness.get_metrics(gw.port))
            except AssertionError:
                return False
            return True

        harness.wait_until(metrics, scaled(10), "/metrics once the clients closed")
        m = got
        self.assertGreaterEqual(m["roomcast_connections_rejected_total"], 50)
        self.assertEqual(m["roomcast_accept_failures_total"], 0)

    def test_the_largest_stream_url_fits_the_header_limit(self):
        # 64 rooms of 128 bytes: the URL alone is 8,278 bytes
        gw = self.cluster.start_gateway()
        rooms = ",".join(("r%02d" % i) + "x" * 125 for i in range(64))
        c = self.sse(gw, "/api/v1/events?room_id=" + rooms)
        self.assertEqual(c.status, 200)
        self.assertEqual(harness.get_metrics(gw.port)["roomcast_streams_open"], 1)


class AllowedHostsTest(GatewayTest):
    def test_other_hosts_are_refused(self):
        self.cluster.start_broker()
        gw = self.cluster.start_gateway("--allowed-hosts", "chat.example.com, localhost:1,*.corp.example,127.0.0.1")

        def get(path, host):
            c = RawHTTP(gw.port)
            try:
                c.send(("GET %s HTTP/1.1\r\nHost: %s\r\n\r\n" % (path, host)).encode())
                return c.read_response()
            finally:
                c.close()

        self.assertEqual(get("/metrics", "chat.example.com").status, 200)
        self.assertEqual(get("/metrics", "CHAT.example.com:8443").status, 200)  # a name: any port
        self.assertEqual(get("/metrics", "a.corp.example").status, 200)
        self.assertEqual(get("/metrics", "localhost:1").status, 200)
        for host in ("evil.example", "localhost", "localhost:2", "corp.example", "chat.example.com.evil"):
            r = get("/metrics", host)
            self.assertJSONError(r, 403, "host_not_allowed")
        # the firehose too: a DNS-rebinding page cannot read it
        r = get("/api/v1/events", "evil.example")
        self.assertJSONError(r, 403, "host_not_allowed")
        # probes are answered whatever their Host
        self.assertEqual(get("/healthz", "10.0.0.7:8080").status, 200)
        self.assertGreaterEqual(harness.get_metrics(gw.port, )["roomcast_hosts_refused_total"], 6)


if __name__ == "__main__":
    harness.main()
