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

if __name__ == "__main__":
    harness.main()
