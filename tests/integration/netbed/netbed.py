"""
netbed.py - separate "hosts" for integration tests: network namespaces on a bridge.

A Bed is one test's small network of machines on this one machine:

- a namespace of its own holding only a bridge (br0), so nothing is added to
  or changed in the root namespace's networking;
- one namespace per host, joined to the bridge by a veth pair (eth0 in the
  host, h<N> on the bridge), with loopback up and one address from
  198.18.0.0/15 (RFC 2544, reserved for benchmarking: not routed anywhere);
- every name starts with the run's prefix rcnb-<pid>.<start time>-, so
  parallel ctest runs cannot collide and a later run can tell a dead run's
  leftovers from a live one's (cleanup_stale).

Address plan: a run uses the /24 198.18.0.0 + (pid mod 512) * 256, the
bridge namespace holds .1 on br0, hosts get .11, .12, ... in the order they
are added. The namespaces already keep runs apart (the same /24 in two runs
is two separate networks); the per-run /24 only keeps logs unambiguous.

A Host runs commands inside itself (run, spawn: `ip netns exec NS ...`;
wrap(): that prefix, for harness.Cluster.start_gateway(wrap=...)), opens
sockets from inside itself (socket, connect: setns(2) on the calling thread
around socket creation), is cut off and healed (its bridge-side veth set
down/up: a pulled cable, the host keeps its address and routes) and is given
a lossy input (nftables in its namespace, `numgen random mod 100 < N drop`
on eth0's input, optionally only for packets from some hosts' addresses;
this kernel has no netem; iptables' statistic match on the same nf_tables
kernel when the nft tool is not installed).

Teardown always runs: Bed is a context manager, every open Bed is also
closed by atexit and on SIGTERM (then the process dies of the signal), and Bed() first
removes the namespaces of dead runs (SIGKILLed by a ctest timeout) and the
processes left in them. Teardown kills whatever still runs in a host
namespace (`ip netns pids`), also processes started by another harness.

Skip: require() raises Skip (tests exit SKIP = 77, ctest SKIP_RETURN_CODE)
when not root or `ip netns` or packet filtering is unavailable.

Only the Python standard library (ctypes for setns).
"""

import atexit
import ctypes
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

SKIP = 77
PREFIX = "rcnb-"
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
LOSS_TABLE = "rcnb_loss"

_NS_RE = re.compile(r"^%s(\d+)\.(\d+)-(.+)$" % re.escape(PREFIX))


class Skip(Exception):
    """This machine cannot run the bed (the test exits SKIP)."""


class BedError(Exception):
    """A command that builds or changes the bed failed."""


def _ip():
    return shutil.which("ip") or ("/usr/sbin/ip" if os.access("/usr/sbin/ip", os.X_OK) else None)


def _loss_tool():
    """'nft', else 'iptables' (iptables-nft: the same kernel tables), else None; ROOMCAST_NETBED_LOSS overrides."""
    forced = os.environ.get("ROOMCAST_NETBED_LOSS")
    if forced:
        return forced if shutil.which(forced) else None
    for tool in ("nft", "iptables"):
        if shutil.which(tool):
            return tool
    return None


def require(loss=True):
    """Raises Skip with the reason when this process cannot build a bed (loss: also packet loss)."""
    if os.geteuid() != 0:
        raise Skip("network namespaces need root (this test runs as uid %d)" % os.geteuid())
    ip = _ip()
    if ip is None:
        raise Skip("the ip command is not installed (Debian package iproute2; scripts/install-deps)")
    r = subprocess.run([ip, "netns", "list"], capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip("`ip netns list` failed: %s" % r.stderr.strip())
    if loss and _loss_tool() is None:
        raise Skip("neither nft (Debian package nftables; scripts/install-deps) nor iptables is installed")
    # can a namespace be made at all (a container without CAP_SYS_ADMIN cannot)?
    probe = "%s%s-probe" % (PREFIX, run_id())
    r = subprocess.run([ip, "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        raise Skip("`ip netns add` failed: %s" % r.stderr.strip())
    subprocess.run([ip, "netns", "del", probe], capture_output=True)


def _start_time(pid):
    """The process's start time in clock ticks since boot (/proc/PID/stat field 22), or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    return int(stat[stat.rindex(")") + 2:].split()[19])


def run_id(pid=None):
    """'<pid>.<start time>': unique among live processes and not reused by a later process with the same pid."""
    pid = pid or os.getpid()
    return "%d.%d" % (pid, _start_time(pid))


def _run(argv, check=True, timeout=10):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise BedError("%s: exit %d: %s" % (" ".join(argv), r.returncode, r.stderr.strip()))
    return r


def list_namespaces():
    """Names of every named network namespace (/run/netns)."""
    try:
        return sorted(os.listdir(NETNS_DIR))
    except FileNotFoundError:
        return []


def _kill_namespace_pids(ns, deadline=5.0):
    """SIGKILLs every process in namespace ns and waits (bounded) until none is left."""
    ip = _ip()
    end = time.monotonic() + deadline
    while True:
        r = _run([ip, "netns", "pids", ns], check=False)
        pids = [int(p) for p in r.stdout.split()] if r.returncode == 0 else []
        pids = [p for p in pids if p != os.getpid()]
        if not pids:
            return
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() >= end:
            sys.stderr.write("netbed: processes %s still in %s after SIGKILL\n" % (pids, ns))
            return
        time.sleep(0.05)


def _delete_namespace(ns):
    _kill_namespace_pids(ns)
    _run([_ip(), "netns", "del", ns], check=False)


def cleanup_stale():
    """
    Removes the namespaces (and with them their veths and bridge) and the
    processes in them of runs whose process is gone; leaves live runs alone.
    Returns the names removed.
    """
    removed = []
    for ns in list_namespaces():
        m = _NS_RE.match(ns)
        if not m:
            continue
        pid, start = int(m.group(1)), int(m.group(2))
        if _start_time(pid) == start:
            continue
        _delete_namespace(ns)
        removed.append(ns)
    return removed


# ---------------------------------------------------------------------------
# entering a namespace from this process (one thread at a time)
# ---------------------------------------------------------------------------

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: %s" % os.strerror(e))


class _InNamespace:
    """with _InNamespace(ns): the calling thread is in network namespace ns (sockets made here stay in it)."""

    def __init__(self, ns):
        self.path = os.path.join(NETNS_DIR, ns)

    def __enter__(self):
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        fd = os.open(self.path, os.O_RDONLY)
        try:
            _setns(fd)
        except OSError:
            os.close(self.home)
            raise
        finally:
            os.close(fd)
        return self

    def __exit__(self, *exc):
        try:
            _setns(self.home)
        finally:
            os.close(self.home)


# ---------------------------------------------------------------------------
# processes
# ---------------------------------------------------------------------------

class Proc:
    """A child process (inside a host) whose stdout and stderr go to a log file."""

    def __init__(self, name, argv, log_path, env=None):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.popen = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
                                      env=env, close_fds=True)
        self.pid = self.popen.pid
        self.returncode = None

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
        self._log.close()
        return self.returncode

    def kill(self):
        """SIGKILL and reap."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.returncode = self.popen.wait()
        self._log.close()
        return self.returncode

    def stop(self, timeout=5.0):
        """SIGTERM, wait up to timeout, then SIGKILL; always reaps. Returns the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                return self.kill()
        return self.kill()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


# ---------------------------------------------------------------------------
# the bed and its hosts
# ---------------------------------------------------------------------------

_open_beds = []
_signals_installed = False


def _close_open_beds():
    for bed in list(_open_beds):
        bed.close()


def _on_sigterm(signum, frame):
    # Tear down here rather than raise SystemExit: unittest records any
    # exception from a test (SystemExit too) and goes on with the next test.
    # Then die of the signal, as without the handler.
    _close_open_beds()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_teardown():
    global _signals_installed
    if _signals_installed:
        return
    _signals_installed = True
    atexit.register(_close_open_beds)
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _on_sigterm)


def subnet_for(pid):
    """The run's /24 prefix '198.18.X' or '198.19.X' (three octets) from 198.18.0.0/15."""
    i = pid % 512
    return "198.%d.%d" % (18 + i // 256, i % 256)


class Host:
    """One machine of the bed: a network namespace with eth0 on the bridge. Made by Bed.add_host."""

    def __init__(self, bed, name, index, addr):
        self.bed = bed
        self.name = name
        self.ns = bed.prefix + name
        self.veth = "h%d" % index  # the bridge's end, in the bridge namespace
        self.addr = addr
        self.loss = 0
        self.cut_off = False

    def __repr__(self):
        return "Host(%s %s)" % (self.name, self.addr)

    # -- running things inside --

    def wrap(self):
        """The command prefix that runs a program inside this host (`ip netns exec NS`): it execs, same pid."""
        return [self.bed.ip, "netns", "exec", self.ns]

    def run(self, argv, timeout=10, check=True, input=None):
        """Runs argv inside the host to completion; returns CompletedProcess (text). check: BedError on failure."""
        r = subprocess.run(self.wrap() + list(argv), capture_output=True, text=True, timeout=timeout,
                           input=input)
        if check and r.returncode != 0:
            raise BedError("on %s: %s: exit %d: %s" % (self.name, " ".join(argv), r.returncode,
                                                       (r.stderr or r.stdout).strip()))
        return r

    def spawn(self, name, argv, env=None):
        """Starts argv inside the host; returns a Proc the bed stops and reaps at teardown."""
        return self.bed._spawn(self, name, argv, env)

    def inside(self):
        """
        with host.inside(): the calling thread is in this host's network (every
        socket it makes, and the threads it starts meanwhile, are), then back.
        """
        return _InNamespace(self.ns)

    def socket(self, family=socket.AF_INET, type=socket.SOCK_STREAM):
        """A socket of this host's network (made in its namespace; usable from any thread)."""
        with _InNamespace(self.ns):
            return socket.socket(family, type)

    def connect(self, addr, port, timeout=5.0):
        """A TCP connection from this host to addr:port."""
        s = self.socket()
        s.settimeout(timeout)
        try:
            s.connect((addr, port))
        except OSError:
            s.close()
            raise
        return s

    def pids(self):
        r = _run([self.bed.ip, "netns", "pids", self.ns], check=False)
        return [int(p) for p in r.stdout.split()]

    # -- faults --

    def cut(self):
        """Pulls the cable: the bridge's end of this host's veth goes down (the host keeps its address)."""
        self.bed._ip_in_bridge("link", "set", self.veth, "down")
        self.cut_off = True

    def heal(self, timeout=5.0):
        """
        Plugs the cable back in; returns once the host's eth0 has its carrier
        back (bounded by timeout). As on a real LAN, a peer whose ARP for this
        host failed during the cut reaches it again at ARP's next try (up to ~1 s).
        """
        self.bed._ip_in_bridge("link", "set", self.veth, "up")
        self.cut_off = False
        deadline = time.monotonic() + timeout
        while "LOWER_UP" not in _run([self.bed.ip, "-n", self.ns, "-o", "link", "show", "eth0"]).stdout:
            if time.monotonic() >= deadline:
                raise BedError("eth0 of %s has no carrier %.1fs after the heal" % (self.name, timeout))
            time.sleep(0.01)

    def set_loss(self, percent, sources=None):
        """
        Drops percent % of the packets eth0 receives, at random (0: none);
        sources: only of those sent from these addresses (hosts' .addr), e.g.
        a lossy link between two hosts. Replaces an earlier setting.
        """
        percent = int(percent)
        if not 0 <= percent <= 100:
            raise ValueError("loss percent %r" % percent)
        sources = [str(a) for a in sources or []]
        for a in sources:
            if not re.match(r"^\d{1,3}(\.\d{1,3}){3}$", a):
                raise ValueError("source %r is not an IPv4 address" % a)
        self.clear_loss()
        if percent == 0:
            return
        tool = self.bed.loss_tool
        if tool == "nft":
            match = "ip saddr { %s } " % ", ".join(sources) if sources else ""
            rules = ("table inet %s {\n"
                     "  chain input {\n"
                     "    type filter hook input priority -10; policy accept;\n"
                     "    iifname \"eth0\" %snumgen random mod 100 < %d drop\n"
                     "  }\n"
                     "}\n") % (LOSS_TABLE, match, percent)
            self.run(["nft", "-f", "/dev/stdin"], input=rules)
        elif tool == "iptables":
            match = ["-s", ",".join(sources)] if sources else []
            self.run(["iptables", "-w", "-I", "INPUT", "-i", "eth0"] + match +
                     ["-m", "statistic", "--mode", "random",
                      "--probability", "%.2f" % (percent / 100.0), "-j", "DROP"])
        else:
            raise BedError("no packet filter tool (nft or iptables) to make a lossy link")
        self.loss = percent

    def clear_loss(self):
        if self.loss == 0:
            return
        if self.bed.loss_tool == "nft":
            self.run(["nft", "delete", "table", "inet", LOSS_TABLE])
        else:
            self.run(["iptables", "-w", "-F", "INPUT"])
        self.loss = 0


class Bed:
    """
    A set of hosts on one bridge, for one test. Use as a context manager (or
    call close()); add hosts with add_host(name). logdir holds the logs of
    spawned processes (a temp dir by default, kept: the test prints or removes it).
    """

    def __init__(self, logdir=None):
        self.ip = _ip()
        if self.ip is None:
            raise Skip("the ip command is not installed (Debian package iproute2)")
        _install_teardown()
        self.stale_removed = cleanup_stale()
        self.id = run_id()
        self.prefix = "%s%s-" % (PREFIX, self.id)
        self.subnet = subnet_for(os.getpid())
        self.bridge_ns = self.prefix + "br"
        self.bridge_addr = self.subnet + ".1"
        self.loss_tool = _loss_tool()
        self.logdir = logdir or tempfile.mkdtemp(prefix="roomcast-netbed-")
        self.hosts = {}
        self.procs = []
        self.namespaces = []
        self.closed = False
        _open_beds.append(self)
        try:
            self._add_namespace(self.bridge_ns)
            self._ip_in_bridge("link", "add", "br0", "type", "bridge")
            self._ip_in_bridge("addr", "add", self.bridge_addr + "/24", "dev", "br0")
            self._ip_in_bridge("link", "set", "br0", "up")
            self._ip_in_bridge("link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _add_namespace(self, ns):
        _run([self.ip, "netns", "add", ns])
        self.namespaces.append(ns)

    def _ip_in_bridge(self, *args):
        _run([self.ip, "-n", self.bridge_ns] + list(args))

    def add_host(self, name):
        """A new host `name` (letters, digits, '-') at the next address; returns the Host."""
        if not re.match(r"^[a-z0-9-]{1,20}$", name) or name == "br" or name in self.hosts:
            raise ValueError("bad or duplicate host name %r" % name)
        index = len(self.hosts) + 1
        if index > 200:
            raise ValueError("at most 200 hosts")
        host = Host(self, name, index, "%s.%d" % (self.subnet, 10 + index))
        self._add_namespace(host.ns)
        ipn = [self.ip, "-n", host.ns]
        # both ends are made where they belong: nothing appears in the root namespace, even for a moment
        self._ip_in_bridge("link", "add", host.veth, "type", "veth", "peer", "name", "eth0", "netns", host.ns)
        self._ip_in_bridge("link", "set", host.veth, "master", "br0", "up")
        _run(ipn + ["link", "set", "lo", "up"])
        _run(ipn + ["addr", "add", host.addr + "/24", "dev", "eth0"])
        _run(ipn + ["link", "set", "eth0", "up"])
        self.hosts[name] = host
        return host

    def _spawn(self, host, name, argv, env):
        log = os.path.join(self.logdir, "%02d-%s.log" % (len(self.procs) + 1, name))
        p = Proc(name, host.wrap() + list(argv), log, env)
        self.procs.append(p)
        return p

    def logs(self):
        """Every spawned process's command line and log, for a failing test's output."""
        out = []
        for p in self.procs:
            out.append("----- %s (pid %d): %s\n%s" % (p.name, p.pid, " ".join(p.argv), p.log()))
        return "\n".join(out)

    def close(self):
        """Stops and reaps every process, then removes every namespace (with the veths and bridge). Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            for p in self.procs:
                p.stop(timeout=3.0)
            for ns in reversed(self.namespaces):
                _delete_namespace(ns)
        finally:
            if self in _open_beds:
                _open_beds.remove(self)
        left = [ns for ns in list_namespaces() if ns.startswith(self.prefix)]
        if left:
            sys.stderr.write("netbed: namespaces left after teardown: %s\n" % left)
