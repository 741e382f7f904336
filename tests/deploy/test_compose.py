#!/usr/bin/env python3
"""docker-compose.yml agrees with the binaries (scripts/check-compose), and the
check itself catches the mistakes it is there for (a mutated copy must fail).

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


def build_dir():
    # the binaries' build tree: RC_GATEWAY_BIN is BUILD/gateway/roomcast-gateway
    return os.path.dirname(os.path.dirname(os.environ["RC_GATEWAY_BIN"]))


def check(compose_file):
    return subprocess.run([sys.executable, CHECK, "--build-dir", build_dir(), "--compose-file", compose_file,
                           "--project-dir", SOURCE_DIR], capture_output=True, text=True, timeout=120)


def test_compose_file_agrees_with_the_binaries():
    if shutil.which("docker-compose") is None:
        raise Skip("docker-compose is not installed (scripts/install-deps installs it)")
    r = check(COMPOSE)
    print(r.stdout + r.stderr, end="")
    assert r.returncode == 0, f"check-compose exited {r.returncode}"


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


if __name__ == "__main__":
    sys.exit(run_tests([test_compose_file_agrees_with_the_binaries, test_check_compose_catches_mistakes]))
