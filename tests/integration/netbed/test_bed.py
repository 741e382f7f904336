"""
The test bed itself (netbed.py): hosts reach each other on their 198.18
addresses and nothing else; a cut host gets nothing until healed; a lossy
input drops about the share asked for; and teardown happens however a test
ends: an exception in the with-block, a Bed never closed (atexit), SIGTERM
(ctest stopping a test), and SIGKILL (nothing runs: the next Bed removes the
dead run's namespaces and kills what was left running in them).

The ways of ending run in child processes (this file with --child KIND), so
the parent can check from outside what was left behind. Skips (77) when not
root or without `ip netns` or nft/iptables.
"""

import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import netbed  # noqa: E402

BENCH_NET = ipaddress.ip_network("198.18.0.0/15")


def udp_through(src, dst, n=200):
    """Sends n datagrams from host src to host dst; returns how many arrived."""
    r = dst.socket(type=socket.SOCK_DGRAM)
    s = src.socket(type=socket.SOCK_DGRAM)
    try:
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        r.bind((dst.addr, 0))
        for _ in range(n):
            s.sendto(b"x", r.getsockname())
        got = 0
        r.settimeout(0.3)
        try:
            while got < n:
                r.recv(16)
                got += 1
        except socket.timeout:
            pass
        return got
    finally:
        r.close()
        s.close()


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (not yet reaped by its parent) is not running
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def ours(prefix):
    return [ns for ns in netbed.list_namespaces() if ns.startswith(prefix)]


# ---------------------------------------------------------------------------
# the child: builds a bed with a process in a host, then ends as told
# ---------------------------------------------------------------------------

def child(kind):
    bed = netbed.Bed()
    a = bed.add_host("a")
    bed.add_host("b")
    sleeper = a.spawn("sleeper", ["sleep", "600"])
    # the line the parent waits for: the run's prefix and the pid inside the host
    print("ready %s %d" % (bed.prefix, sleeper.pid), flush=True)
    # until the parent has looked (or signals)
    sys.stdin.readline()
    if kind == "exception":
        with bed:
            raise RuntimeError("a failing test")
    if kind == "atexit":
        return 0  # never closed: atexit does it
    if kind in ("sigterm", "sigkill"):
        return 3  # the parent signals instead of answering
    raise ValueError(kind)


# ---------------------------------------------------------------------------
# the tests
# ---------------------------------------------------------------------------

class BedTest(unittest.TestCase):
    def test_hosts_addresses_and_isolation(self):
        with netbed.Bed() as bed:
            a, b = bed.add_host("a"), bed.add_host("b")
            for h in (a, b):
                self.assertIn(ipaddress.ip_address(h.addr), BENCH_NET)
                # only the bed's /24 is routed: nothing can leave the namespaces
                routes = h.run(["ip", "-4", "route"]).stdout.strip().splitlines()
                self.assertEqual(len(routes), 1, routes)
                self.assertTrue(routes[0].startswith(bed.subnet + ".0/24 dev eth0"), routes)
                lo = h.run(["ip", "-o", "link", "show", "lo"]).stdout
                self.assertIn("UP", lo)
            self.assertEqual(sorted(ours(bed.prefix)), sorted([a.ns, b.ns, bed.bridge_ns]))
            # TCP from a to b, b's view of the peer is a's address
            srv = b.socket()
            srv.bind((b.addr, 0))
            srv.listen()
            c = a.connect(b.addr, srv.getsockname()[1])
            conn, peer = srv.accept()
            c.sendall(b"hello")
            self.assertEqual(conn.recv(16), b"hello")
            self.assertEqual(peer[0], a.addr)
            for s in (c, conn, srv):
                s.close()
        self.assertEqual(ours(bed.prefix), [])

    def test_cut_and_heal(self):
        with netbed.Bed() as bed:
            a, b = bed.add_host("a"), bed.add_host("b")
            self.assertEqual(udp_through(a, b), 200)
            b.cut()
            self.assertEqual(udp_through(a, b), 0)
            self.assertEqual(udp_through(b, a), 0)
            b.heal()
            # the bridge port forwards at once (no STP), but an ARP entry that failed
            # during the cut resolves again only on ARP's next try (up to ~1 s), as on a real LAN
            t_heal = time.monotonic()
            for src, dst in ((a, b), (b, a)):
                while udp_through(src, dst, 1) != 1:
                    self.assertLess(time.monotonic(), t_heal + 5, "nothing %s -> %s after the heal" % (src, dst))
            print("netbed: reachable both ways %.2fs after the heal" % (time.monotonic() - t_heal), flush=True)
            self.assertEqual(udp_through(a, b), 200)
            self.assertEqual(udp_through(b, a), 200)

    def test_lossy_input(self):
        with netbed.Bed() as bed:
            a, b = bed.add_host("a"), bed.add_host("b")
            b.set_loss(50)
            got = udp_through(a, b, 400)
            # binomial(400, 0.5): 200 +- 10 (sd); 140..260 is +- 6 sd
            self.assertTrue(140 <= got <= 260, "50%% loss let %d of 400 through" % got)
            # only b's input: b -> a is not lossy
            self.assertEqual(udp_through(b, a), 200)
            b.set_loss(0)
            self.assertEqual(udp_through(a, b), 200)
            print("netbed: loss 50%%: %d of 400 datagrams arrived (tool %s)" % (got, bed.loss_tool), flush=True)

    def run_child(self, kind, sig=None):
        """Runs the child; returns (exit code, prefix, pid of its process in host a)."""
        p = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", kind], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
        try:
            line = p.stdout.readline().split()
            self.assertEqual(line[:1], ["ready"], (line, p.stderr.read() if p.poll() is not None else ""))
            prefix, pid = line[1], int(line[2])
            self.assertTrue(ours(prefix), "the child's namespaces exist while it runs")
            self.assertTrue(pid_alive(pid))
            if sig is not None:
                p.send_signal(sig)
            else:
                p.stdin.write("go\n")
                p.stdin.flush()
            rc = p.wait(timeout=30)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            for f in (p.stdin, p.stdout, p.stderr):
                f.close()
        return rc, prefix, pid

    def assertGone(self, prefix, pid):
        deadline = time.monotonic() + 5
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(pid_alive(pid), "the process in the host outlived the bed")
        self.assertEqual(ours(prefix), [], "namespaces left behind")

    def test_teardown_on_exception(self):
        rc, prefix, pid = self.run_child("exception")
        self.assertEqual(rc, 1)
        self.assertGone(prefix, pid)

    def test_teardown_at_exit(self):
        rc, prefix, pid = self.run_child("atexit")
        self.assertEqual(rc, 0)
        self.assertGone(prefix, pid)

    def test_teardown_on_sigterm(self):
        rc, prefix, pid = self.run_child("sigterm", signal.SIGTERM)
        self.assertEqual(rc, -signal.SIGTERM)
        self.assertGone(prefix, pid)

    def test_stale_run_removed(self):
        rc, prefix, pid = self.run_child("sigkill", signal.SIGKILL)
        self.assertEqual(rc, -signal.SIGKILL)
        # nothing ran at the kill: its namespaces and its process are still there
        left = ours(prefix)
        self.assertEqual(len(left), 3, left)
        self.assertTrue(pid_alive(pid))
        with netbed.Bed() as bed:
            self.assertEqual(sorted(set(bed.stale_removed) & set(left)), sorted(left))
            self.assertGone(prefix, pid)
            self.assertTrue(ours(bed.prefix), "a live run's namespaces are left alone")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        return child(sys.argv[2])
    try:
        netbed.require()
    except netbed.Skip as e:
        print("SKIP: %s" % e, flush=True)
        return netbed.SKIP
    prog = unittest.main(verbosity=2, exit=False)
    return 0 if prog.result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
