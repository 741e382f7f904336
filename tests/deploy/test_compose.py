#!/usr/bin/env python3
"""docker-compose.yml, and docker-compose.yml merged with deploy/compose.ha.yml,
agree with the binaries (scripts/check-compose), and the check itself catches
the mistakes it is there for (a mutated copy must fail).

No Docker engine is needed: docker-compose 1.29 validates and prints the file
without one, and the binaries are run here with --help.
"""
import os
import shutil
import subprocess
import sys
import tempfile

from harness import SOURCE_DIR, Skip, run_tests

CHECK = os.path.join(SOURCE_DIR, "scripts", "check-compose")
COMPOSE = os.path.join(SOURCE_DIR, "docker-compose.yml")
HA = os.path.join(SOURCE_DIR, "deploy", "compose.ha.yml")


def build_dir():
    # the binaries' build tree: RC_GATEWAY_BIN is BUILD/gateway/roomcast-gateway
    return os.path.dirname(os.path.dirname(os.environ["RC_GATEWAY_BIN"]))


def check(*compose_files):
    files = sum((["--compose-file", f] for f in compose_files), [])
    return subprocess.run([sys.executable, CHECK, "--build-dir", build_dir(), *files, "--project-dir", SOURCE_DIR],
                          capture_output=True, text=True, timeout=120)


def test_compose_file_agrees_with_the_binaries():
    if shutil.which("docker-compose") is None:
        raise Skip("docker-compose is not installed (scripts/install-deps installs it)")
    r = check(COMPOSE)
    print(r.stdout + r.stderr, end="")
    assert r.returncode == 0, f"check-compose exited {r.returncode}"


def test_ha_compose_files_agree_with_the_binaries():
    """docker-compose -f docker-compose.yml -f deploy/compose.ha.yml: NATS nodes, two brokers, gateways on both."""
    if shutil.which("docker-compose") is None:
        raise Skip("docker-compose is not installed (scripts/install-deps installs it)")
    r = check(COMPOSE, HA)
    print(r.stdout + r.stderr, end="")
    assert r.returncode == 0, f"check-compose exited {r.returncode}"
    for service in ("nats1", "nats2", "nats3", "broker", "broker2", "gateway", "lb"):
        assert service in r.stdout, f"{service} not among the services checked: {r.stdout}"


# (what to change in docker-compose.yml, what check-compose must then say)
MUTATIONS = [
    ("ROOMCAST_HEARTBEAT_MS: ${ROOMCAST_HEARTBEAT_MS:-15000}", "ROOMCAST_HEARTBEAT_MS: 15s", "expected an integer"),
    ("ROOMCAST_HEARTBEAT_MS: ${ROOMCAST_HEARTBEAT_MS:-15000}", "ROOMCAST_HEARTBEAT: 15000", "ROOMCAST_HEARTBEAT is not a variable"),
    ("ROOMCAST_BUS: tcp://0.0.0.0:7410", "ROOMCAST_BROKER_BUS: tcp://0.0.0.0:7410", "not a variable of roomcast-broker"),
    ("tcp://broker:7411", "tcp://localhost:7411", "is not the broker service's api"),
    ("${ROOMCAST_PUBLISH_TOKEN:-}", "fixed-token", "does not come from ${ROOMCAST_PUBLISH_TOKEN}"),
    ('"--timeout-ms", "1000"', '"--timeout", "1000"', "unknown option"),
    ("ROOMCAST_LISTEN: 0.0.0.0:8080", "ROOMCAST_LISTEN: 127.0.0.1:8080", "should be 0.0.0.0:PORT"),
    ('command: ["roomcast-gateway"]', 'command: ["roomcast-gateway", "--max-conns", "-1"]', "out of range"),
    ('DEMO_INTERVAL: "0.3"', 'DEMO_INTERVAL: "fast"', "DEMO_INTERVAL"),
    ("    build:\n      context: .\n      dockerfile: deploy/Dockerfile.lb\n", "", "would come from a registry"),
    ("dockerfile: deploy/Dockerfile.lb", "dockerfile: deploy/Dockerfile.nginx", "does not exist"),
]


def test_check_compose_catches_mistakes():
    if shutil.which("docker-compose") is None:
        raise Skip("docker-compose is not installed")
    with open(COMPOSE, encoding="utf-8") as f:
        text = f.read()
    with tempfile.TemporaryDirectory(prefix="roomcast-compose.") as d:
        for old, new, says in MUTATIONS:
            assert old in text, f"docker-compose.yml no longer contains {old!r}: update MUTATIONS"
            path = os.path.join(d, "docker-compose.yml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace(old, new, 1))
            r = check(path)
            assert r.returncode == 1, f"{old!r} -> {new!r}: check-compose exited {r.returncode}:\n{r.stdout}{r.stderr}"
            assert says in r.stderr, f"{old!r} -> {new!r}: expected {says!r} in:\n{r.stderr}"
            print(f"  caught {old!r} -> {new!r}")


# (what to change in deploy/compose.ha.yml, what check-compose must then say)
HA_ROUTES = '"--routes", "nats://nats1:6222,nats://nats2:6222,nats://nats3:6222"'
HA_MUTATIONS = [
    ("ROOMCAST_BROKER_BUS: tcp://broker:7410,tcp://broker2:7410", "ROOMCAST_BROKER_BUS: tcp://broker:7410",
     "does not dial broker2"),
    ("tcp://broker:7411,tcp://broker2:7411", "tcp://broker:7411,tcp://broker3:7411",
     "tcp://broker3:7411 is not a broker service's api"),
    ("tcp://broker:7410,tcp://broker2:7410", "tcp://broker:7410,,tcp://broker2:7410", "empty"),
    ("nats://nats1:4222,nats://nats2:4222,nats://nats3:4222", "nats://nats1:4222,nats://nats4:4222",
     "nats://nats4:4222 is not a NATS service's client port"),
    ("nats://nats1:4222,nats://nats2:4222,nats://nats3:4222", "nats://nats1:4222", "does not list nats2"),
    ('ROOMCAST_NATS_REPLICAS: "3"', 'ROOMCAST_NATS_REPLICAS: "5"', "5 replicas but 3 NATS servers"),
    ('ROOMCAST_NATS_REPLICAS: "3"', 'ROOMCAST_NATS_REPLICAS: "three"', "expected an integer"),
    ('  ROOMCAST_DATA_DIR: ""\n', "", "--data-dir goes with --store file, not nats"),
    (HA_ROUTES, '"--routes", "nats://nats1:6222,nats://nats2:6222"', "nats1: --routes do not name nats3"),
    ('"--name", "nats2"', '"--name", "nats1"', "server name nats1 is also"),
    ('"--jetstream"', '"--jetstreem"', "nats1: JetStream is off"),
    ('"--cluster_name", "roomcast"', '"--cluster_name", "roomcast2"', "cluster names differ"),
    ("    volumes:\n      - nats2-data:/var/lib/nats\n", "", "nats2: --store_dir /var/lib/nats is on no volume"),
    ("http://127.0.0.1:8222/healthz", "http://127.0.0.1:8223/healthz", "does not ask :8222/healthz"),
    ("dockerfile: deploy/Dockerfile.nats", "dockerfile: deploy/Dockerfile.natz", "does not exist"),
    ("    depends_on: *needs-nats\n\n  gateway:", "\n  gateway:", "broker2: does not wait for nats1"),
]


def test_check_compose_catches_ha_mistakes():
    if shutil.which("docker-compose") is None:
        raise Skip("docker-compose is not installed")
    with open(HA, encoding="utf-8") as f:
        text = f.read()
    with tempfile.TemporaryDirectory(prefix="roomcast-compose-ha.") as d:
        for old, new, says in HA_MUTATIONS:
            assert old in text, f"deploy/compose.ha.yml no longer contains {old!r}: update HA_MUTATIONS"
            path = os.path.join(d, "compose.ha.yml")
            with open(path, "w", encoding="utf-8") as f:
                f.write(text.replace(old, new, 1))
            r = check(COMPOSE, path)
            assert r.returncode == 1, f"{old!r} -> {new!r}: check-compose exited {r.returncode}:\n{r.stdout}{r.stderr}"
            assert says in r.stderr, f"{old!r} -> {new!r}: expected {says!r} in:\n{r.stderr}"
            print(f"  caught {old!r} -> {new!r}")


if __name__ == "__main__":
    sys.exit(run_tests([test_compose_file_agrees_with_the_binaries, test_check_compose_catches_mistakes,
                        test_ha_compose_files_agree_with_the_binaries, test_check_compose_catches_ha_mistakes]))
