#!/usr/bin/env python3
"""bench/compare --store, small: fan1k-rate (--quick) with the broker's
history in memory and in one nats-server (bench/nats.sh), one run each.
Exits 1 unless both runs delivered every acknowledged event to every stream
with no gap or duplicate, the NATS run counted the nats-server's CPU (and
the memory run none), and no nats-server of the run is left. Exits 77
(skipped) without nats-server.

    bench_compare_store.py BUILD_DIR OUT_DIR
"""
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
COMPARE = os.path.join(HERE, "..", "..", "bench", "compare")


def main():
    build, out = sys.argv[1], sys.argv[2]
    if shutil.which("nats-server") is None:
        print("SKIP: nats-server is not installed (scripts/install-deps installs it)")
        return 77
    shutil.rmtree(out, ignore_errors=True)
    r = subprocess.run([sys.executable, COMPARE, "--quick", "--skip-nchan", "--only", "fan1k-rate",
                        "--reps", "1", "--store", "memory,nats-r1", "--bin", build, "--out", out,
                        "--time-limit", "0"], timeout=240, check=False)
    fails = []
    if r.returncode != 0:
        fails.append(f"compare exited {r.returncode}")
    try:
        with open(os.path.join(out, "results.json")) as f:
            runs = {x["server"]: x for x in json.load(f)["runs"]}
    except OSError as e:
        print(f"FAIL: compare exited {r.returncode} with no results: {e}")
        return 1
    for kind in ("roomcast-memory", "roomcast-nats-r1"):
        rec = runs.get(kind)
        if rec is None:
            fails.append(f"{kind}: no run")
            continue
        d = rec["derived"]
        print(f"{kind}: published {d['published']} deliveries {d['deliveries']} "
              f"lost/gaps/dups {d['lost']}/{d['gaps']}/{d['dups']} "
              f"NATS CPU-s per 1M {d['nats_cpu_s_per_m']:.2f}")
        if d["published"] <= 0 or d["connected"] != 1000:
            fails.append(f"{kind}: published {d['published']}, connected {d['connected']}")
        if d["lost"] or d["gaps"] or d["dups"] or d["deliveries"] < d["expected"]:
            fails.append(f"{kind}: deliveries {d['deliveries']} of {d['expected']}, "
                         f"gaps {d['gaps']} dups {d['dups']}")
        if not rec.get("server_alive_at_end"):
            fails.append(f"{kind}: a server died during the run")
    nats = runs.get("roomcast-nats-r1")
    if nats and not nats["window"].get("nats_cpu_ticks", 0) > 0:
        fails.append("roomcast-nats-r1: the nats-server's CPU was not counted")
    mem = runs.get("roomcast-memory")
    if mem and mem["window"].get("nats_cpu_ticks", 0) != 0:
        fails.append("roomcast-memory: NATS CPU counted without NATS")
    left = subprocess.run(["pgrep", "-f", "nats-server .*" + os.path.abspath(out)],
                          capture_output=True, text=True, check=False).stdout.split()
    if left:
        fails.append(f"nats-server(s) left running: {left}")
    for f in fails:
        print("FAIL:", f)
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
