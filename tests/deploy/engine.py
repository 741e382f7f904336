"""A container engine for the compose test: Debian's podman behind its Docker API.

What makes podman 4.3 (rootful) run docker-compose's stack on a machine like
the one the tests run on (none of it is product code):

- /etc/containers/containers.conf: `[containers] default_ulimits = []` (the
  default asks for more open files than the hard limit here), `[engine]
  runtime = "runc"` and `cgroup_manager = "cgroupfs"` (crun refuses hybrid
  cgroups; there is no systemd). Each setting is written only when the file
  does not set it already; the file as it was is kept once, as
  containers.conf.roomcast-orig (or a note that there was none).
- debian:bookworm (tagged debian:bookworm-slim too), the images' base: made by
  `debootstrap --variant=minbase` from the Debian mirror apt uses, when no
  such image is there.
- `podman system service --time=0 unix://SOCKET`, started here and stopped by
  its pid; docker-compose gets DOCKER_HOST=unix://SOCKET.
- podman runs health checks from systemd timers, absent here: while the
  stack runs, run_health_checks() runs `podman healthcheck run NAME` for each
  container every 1.5 s (docker-compose's `condition: service_healthy` waits
  for that).
- netavark 1.4 (Debian bookworm's) leaves the network's bridge to take the
  lowest MAC address of its ports, so it changes as containers join; a
  container that has the old one in its ARP cache cannot reach the bridge's
  address (aardvark-dns: every name lookup) for up to a minute (seen here: the
  demo publisher's `broker` lookups timing out; netavark 1.9 pins the MAC,
  containers/netavark#833). run_health_checks() pins it as soon as the bridge
  exists: the first container (the broker) has started, and the others wait
  for it to be healthy, which is this loop's doing.

Podman(log) raises harness.Skip (the test exits 77) when containers cannot
run: not root, a package missing, the service not answering, the mirror
unreachable.
"""
import hashlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from harness import Skip

CONTAINERS_CONF = "/etc/containers/containers.conf"
# section -> key -> value (TOML), each written only when the file has no such key
CONF_SETTINGS = {
    "containers": {"default_ulimits": "[]"},
    "engine": {"runtime": '"runc"', "cgroup_manager": '"cgroupfs"'},
}
# programs and files the setup needs, and the Debian package of each
NEEDS = {
    "podman": "podman", "runc": "runc", "debootstrap": "debootstrap", "docker-compose": "docker-compose",
    # docker-compose.yml's `init: true`
    "/usr/libexec/podman/catatonit": "catatonit",
    # container names in DNS (nginx -> gateway, gateway -> broker) with podman's netavark
    "/usr/lib/podman/aardvark-dns": "aardvark-dns",
}
HEALTH_INTERVAL = 1.5


def free_port():
    """A TCP port nothing listens on now, on every interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def _dockerignore(top):
    """The patterns of top/.dockerignore as (negated, regex), in order."""
    pats = []
    try:
        with open(os.path.join(top, ".dockerignore"), encoding="utf-8") as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return pats
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        neg = line.startswith("!")
        p = os.path.normpath(line[1:] if neg else line).lstrip("/")
        rx, i = "", 0
        while i < len(p):
            if p.startswith("**/", i):
                rx, i = rx + "(?:.*/)?", i + 3
            elif p.startswith("**", i):
                rx, i = rx + ".*", i + 2
            elif p[i] == "*":
                rx, i = rx + "[^/]*", i + 1
            elif p[i] == "?":
                rx, i = rx + "[^/]", i + 1
            else:
                rx, i = rx + re.escape(p[i]), i + 1
        pats.append((neg, re.compile(rx)))
    return pats


def _ignored(pats, rel):
    """Whether docker leaves rel out of the context: the last pattern matching it or a parent wins."""
    parts = rel.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    out = False
    for neg, rx in pats:
        if any(rx.fullmatch(p) for p in prefixes):
            out = not neg
    return out


def source_hash(top):
    """16 hex digits of a hash of what the images are built from.

    The build context as docker-compose sends it (top minus .dockerignore), the
    Dockerfiles and .dockerignore themselves: a change to any of them is a new
    hash, hence a new build; anything else (tests, docs) is not.
    """
    pats = _dockerignore(top)
    negations = any(neg for neg, _ in pats)
    h = hashlib.sha256()
    files = ["Dockerfile", ".dockerignore"]
    for root, dirs, names in os.walk(top):
        rel_root = os.path.relpath(root, top)
        rel_root = "" if rel_root == "." else rel_root + "/"
        if not negations:  # nothing below an ignored directory can come back
            dirs[:] = [d for d in dirs if not _ignored(pats, rel_root + d)]
        dirs.sort()
        for n in sorted(names):
            rel = rel_root + n
            if not _ignored(pats, rel):
                files.append(rel)
    for rel in sorted(set(files)):
        path = os.path.join(top, rel)
        h.update(rel.encode() + b"\0")
        if os.path.islink(path):
            h.update(b"link:" + os.readlink(path).encode())
        elif os.path.isfile(path):
            h.update(b"x" if os.access(path, os.X_OK) else b"-")
            with open(path, "rb") as f:
                h.update(hashlib.sha256(f.read()).digest())
        h.update(b"\0")
    return h.hexdigest()[:16]


def debian_mirror():
    """The Debian mirror apt uses for bookworm (sources.list, sources.list.d/*)."""
    found = []
    paths = ["/etc/apt/sources.list"]
    d = "/etc/apt/sources.list.d"
    if os.path.isdir(d):
        paths += [os.path.join(d, n) for n in sorted(os.listdir(d))]
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            continue
        if path.endswith(".sources"):
            for stanza in re.split(r"\n\s*\n", text):
                fields = {}
                for line in stanza.splitlines():
                    m = re.match(r"^([A-Za-z-]+):\s*(.*)$", line)
                    if m and not line.startswith("#"):
                        fields[m.group(1).lower()] = m.group(2).split()
                if "deb" in fields.get("types", []) and "bookworm" in fields.get("suites", []):
                    found += fields.get("uris", [])
        elif path.endswith(".list") or path == "/etc/apt/sources.list":
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", "", line).split()
                if len(words) >= 3 and words[0] == "deb" and words[2] == "bookworm":
                    found.append(words[1])
    return found[0] if found else "http://deb.debian.org/debian"


def ensure_containers_conf(log):
    """Writes CONF_SETTINGS into containers.conf where the file does not set them; idempotent."""
    try:
        with open(CONTAINERS_CONF, encoding="utf-8") as f:
            lines = f.read().splitlines()
        existed = True
    except FileNotFoundError:
        lines, existed = [], False
    section, have, header_at = None, set(), {}
    for i, line in enumerate(lines):
        m = re.match(r"^\s*\[([^\]\[]+)\]\s*(#.*)?$", line)
        if m:
            section = m.group(1).strip()
            header_at.setdefault(section, i)
            continue
        m = re.match(r"^\s*([A-Za-z0-9_]+)\s*=", line)
        if m and section:
            have.add((section, m.group(1)))
    missing = [(s, k, v) for s, kv in CONF_SETTINGS.items() for k, v in kv.items() if (s, k) not in have]
    if not missing:
        return
    backup = CONTAINERS_CONF + ".roomcast-orig"
    if not os.path.exists(backup):
        if existed:
            shutil.copy2(CONTAINERS_CONF, backup)
        else:
            with open(backup, "w", encoding="utf-8") as f:
                f.write("# there was no /etc/containers/containers.conf before tests/deploy/engine.py\n")
    # insert below existing headers (last first, so earlier indexes stay right), else new sections
    for s in sorted({s for s, _, _ in missing if s in header_at}, key=lambda s: -header_at[s]):
        new = [f"{k} = {v}  # tests/deploy/engine.py" for s2, k, v in missing if s2 == s]
        lines[header_at[s] + 1:header_at[s] + 1] = new
    for s in dict.fromkeys(s for s, _, _ in missing if s not in header_at):
        lines += ["", f"[{s}]"] + [f"{k} = {v}  # tests/deploy/engine.py" for s2, k, v in missing if s2 == s]
    os.makedirs(os.path.dirname(CONTAINERS_CONF), exist_ok=True)
    tmp = CONTAINERS_CONF + ".roomcast-new"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, CONTAINERS_CONF)
    log(f"{CONTAINERS_CONF}: set {', '.join(f'[{s}] {k} = {v}' for s, k, v in missing)} "
        f"(the file as it was: {backup})")


class _UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path, timeout):
        super().__init__("localhost", timeout=timeout)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


class Podman:
    """podman set up and its API service running; use as a context manager."""

    def __init__(self, log):
        self.log = log
        self.service = None
        self.dir = None
        self.health_stop = threading.Event()

    def __enter__(self):
        try:
            self._setup()
        except BaseException:
            self._stop_service()
            raise
        return self

    def __exit__(self, *exc):
        self.stop_health_checks()
        self._stop_service()
        return False

    def _setup(self):
        if os.geteuid() != 0:
            raise Skip("not root: the compose test runs rootful podman (and may write containers.conf)")
        missing = sorted({pkg for what, pkg in NEEDS.items()
                          if not (os.access(what, os.X_OK) if what.startswith("/") else shutil.which(what))})
        if missing:
            raise Skip(f"missing packages: {' '.join(missing)} (scripts/install-deps installs them)")
        ensure_containers_conf(self.log)
        self._remove_leftovers()
        self._base_image()
        self._start_service()

    def podman(self, *args, check=True, timeout=120, stdin=None):
        r = subprocess.run(["podman", *args], input=stdin, capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} exited {r.returncode}: {r.stderr.strip()}")
        return r

    def api(self, method, path, timeout=30):
        """One call to the Docker API on the service's socket; returns (status, body)."""
        c = _UnixHTTP(self.docker_host[len("unix://"):], timeout=timeout)
        try:
            c.request(method, path)
            r = c.getresponse()
            return r.status, r.read()
        finally:
            c.close()

    def image_exists(self, ref):
        return self.podman("image", "exists", ref, check=False).returncode == 0

    def drop_other_tags(self, repo, keep):
        """Untags repo's images of other source hashes (src-*): builds do not pile up."""
        out = self.podman("images", "--format", "{{.Repository}}:{{.Tag}}", check=False).stdout.split()
        for ref in out:
            name, _, tag = ref.rpartition(":")
            if name.rsplit("/", 1)[-1] == repo and tag.startswith("src-") and tag != keep:
                self.podman("rmi", ref, check=False)

    def _remove_leftovers(self):
        """Containers, networks and volumes of earlier runs of the compose tests whose process is gone
        (projects roomcastup<pid>, roomcastha<pid>)."""
        project_re = r"(roomcast(?:up|ha)(\d+))"
        r = self.podman("ps", "-a", "--format", '{{.Names}} {{index .Labels "com.docker.compose.project"}}',
                        check=False)
        projects = {}
        for line in r.stdout.splitlines():
            parts = line.split()
            m = re.fullmatch(project_re, parts[1]) if len(parts) == 2 else None
            if m:
                projects[m.group(1)] = m.group(2)
        for n in self.podman("network", "ls", "--format", "{{.Name}}", check=False).stdout.split():
            m = re.fullmatch(project_re + r"_default", n)
            if m:
                projects[m.group(1)] = m.group(2)
        for n in self.podman("volume", "ls", "--format", "{{.Name}}", check=False).stdout.split():
            m = re.fullmatch(project_re + r"_[A-Za-z0-9_.-]+", n)
            if m:
                projects[m.group(1)] = m.group(2)
        for p, pid in sorted(projects.items()):
            if os.path.exists(f"/proc/{pid}"):
                continue  # its test is still running
            self.log(f"removing what an earlier run left: project {p}")
            names = self.podman("ps", "-aq", "--filter", f"label=com.docker.compose.project={p}",
                                check=False).stdout.split()
            if names:
                self.podman("rm", "-f", "-t", "0", *names, check=False)
            self.podman("network", "rm", "-f", f"{p}_default", check=False)
            vols = [v for v in self.podman("volume", "ls", "--format", "{{.Name}}", check=False).stdout.split()
                    if v.startswith(p + "_")]
            if vols:
                self.podman("volume", "rm", "-f", *vols, check=False)

    def _base_image(self):
        if self.image_exists("debian:bookworm"):
            if not self.image_exists("debian:bookworm-slim"):
                self.podman("tag", "debian:bookworm", "debian:bookworm-slim")
            return
        mirror = debian_mirror()
        self.log(f"no debian:bookworm image: debootstrap --variant=minbase bookworm from {mirror}")
        start = time.monotonic()
        root = tempfile.mkdtemp(prefix="roomcast-debootstrap.", dir="/var/tmp")
        try:
            r = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", root, mirror],
                               capture_output=True, text=True, timeout=300)
            if r.returncode != 0:
                raise Skip(f"debootstrap from {mirror} failed ({r.returncode}): {(r.stdout + r.stderr)[-1500:]}")
            tar = subprocess.Popen(["tar", "-C", root, "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
            imp = subprocess.run(["podman", "import", "--change", 'CMD ["bash"]', "-", "debian:bookworm"],
                                 stdin=tar.stdout, capture_output=True, text=True, timeout=300)
            tar.stdout.close()
            tar.wait(timeout=60)
            if imp.returncode != 0 or tar.returncode != 0:
                raise AssertionError(f"podman import failed: {imp.stderr}")
            self.podman("tag", "debian:bookworm", "debian:bookworm-slim")
        finally:
            shutil.rmtree(root, ignore_errors=True)
        self.log(f"debian:bookworm (and -slim) made in {time.monotonic() - start:.1f}s")

    def _start_service(self):
        self.dir = tempfile.mkdtemp(prefix="roomcast-podman.", dir="/run" if os.path.isdir("/run") else None)
        sock = os.path.join(self.dir, "podman.sock")
        self.docker_host = f"unix://{sock}"
        self.service_log = os.path.join(self.dir, "service.log")
        with open(self.service_log, "wb") as logf:
            self.service = subprocess.Popen(["podman", "system", "service", "--time=0", self.docker_host],
                                            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            if self.service.poll() is not None:
                raise Skip(f"podman system service exited {self.service.returncode}: {self._service_tail()}")
            try:
                c = _UnixHTTP(sock, timeout=2)
                c.request("GET", "/_ping")
                if c.getresponse().status == 200:
                    c.close()
                    break
                c.close()
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise Skip(f"podman system service did not answer on {sock} in 20s: {self._service_tail()}")
            time.sleep(0.2)
        self.log(f"podman system service (pid {self.service.pid}) on {sock}")

    def _service_tail(self):
        try:
            with open(self.service_log, encoding="utf-8", errors="replace") as f:
                return f.read()[-1500:]
        except OSError:
            return ""

    def _stop_service(self):
        if self.service is not None:
            if self.service.poll() is None:
                self.service.send_signal(signal.SIGTERM)
                try:
                    self.service.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.service.kill()
                    self.service.wait(timeout=15)
            self.service = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def pin_bridge_mac(self, network):
        """Sets network's bridge's MAC address to the one it has, so that the kernel no longer changes it.

        Returns True once it is pinned (addr_assign_type 3: set by user space);
        False while the network or its bridge does not exist.
        """
        r = self.podman("network", "inspect", "--format", "{{.NetworkInterface}}", network, check=False)
        dev = r.stdout.strip()
        if r.returncode != 0 or not re.fullmatch(r"[A-Za-z0-9_.-]{1,15}", dev):
            return False
        sysfs = f"/sys/class/net/{dev}"
        try:
            with open(f"{sysfs}/addr_assign_type", encoding="ascii") as f:
                if f.read().strip() == "3":
                    return True
            with open(f"{sysfs}/address", encoding="ascii") as f:
                mac = f.read().strip()
        except OSError:
            return False
        r = subprocess.run(["ip", "link", "set", "dev", dev, "address", mac], capture_output=True, text=True,
                           timeout=10)
        if r.returncode != 0:
            raise AssertionError(f"ip link set dev {dev} address {mac}: {r.stderr.strip()}")
        self.log(f"bridge {dev} of {network}: MAC address pinned to {mac} (netavark 1.4 would let it change)")
        return True

    def run_health_checks(self, containers, network=None):
        """Until stop_health_checks(): `podman healthcheck run` for every container of containers(),
        every HEALTH_INTERVAL; first, each time until it is done, pin_bridge_mac(network)."""
        pinned = network is None
        while not self.health_stop.is_set():
            try:
                names = containers()
                # before the health check that makes the first container healthy, so before any other starts
                pinned = pinned or self.pin_bridge_mac(network)
                for name in names:
                    if self.health_stop.is_set():
                        break
                    # a container without a health check (demo) or stopping just fails: ignore
                    self.podman("healthcheck", "run", name, check=False, timeout=30)
            except Exception as e:  # keep checking; the waits have deadlines
                self.log(f"health checks: {e}")
            self.health_stop.wait(HEALTH_INTERVAL)

    def stop_health_checks(self):
        self.health_stop.set()
