#!/usr/bin/env python3
"""Browser test of the demo page (web/) through nginx, in Debian's chromium.

Starts the local cluster like the deploy tests (broker, two gateways with
--static-dir web/, nginx with deploy/nginx.conf in front), then runs
demo.test.mjs with node: playwright-core drives /usr/bin/chromium; a message
sent from one page must appear in a second page, and a page joining a room
with 60 messages shows the last 50, then "load older" the first 10 above. Screenshots go to
SCREENSHOT_DIR (ctest: BUILD/test-output/browser).

node_modules comes from `npm ci --prefix tests/browser` (the ctest fixture
browser_setup runs it when it is missing). Skips (77) when nginx, node or
chromium is not installed; scripts/install-deps installs nginx and chromium.
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "deploy"))

from harness import SKIP, SOURCE_DIR, Cluster, Skip, require_nginx  # noqa: E402

CHROMIUM = "/usr/bin/chromium"


def main():
    try:
        require_nginx()
        node = shutil.which("node")
        if node is None:
            raise Skip("node is not installed")
        if not os.access(CHROMIUM, os.X_OK):
            raise Skip(f"{CHROMIUM} is not installed (scripts/install-deps installs Debian's chromium)")
        if not os.path.isdir(os.path.join(HERE, "node_modules", "playwright-core")):
            raise Skip("tests/browser/node_modules is missing: run npm ci --prefix tests/browser")
    except Skip as e:
        print(f"SKIP: {e}")
        return SKIP
    shots = os.environ.get("SCREENSHOT_DIR") or os.path.join(os.getcwd(), "test-output", "browser")
    web = os.path.join(SOURCE_DIR, "web")
    with Cluster("browser") as c:
        c.start_broker()
        _, a = c.start_gateway("gateway-a", "--static-dir", web)
        _, b = c.start_gateway("gateway-b", "--static-dir", web)
        _, lb = c.start_nginx("nginx", [a, b])
        env = dict(c.env, DEMO_URL=f"http://127.0.0.1:{lb}/", SCREENSHOT_DIR=shots)
        r = subprocess.run([node, os.path.join(HERE, "demo.test.mjs")], env=env, cwd=HERE, timeout=150)
        if r.returncode != 0:
            raise AssertionError(f"demo.test.mjs exited {r.returncode}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
