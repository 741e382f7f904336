#!/usr/bin/env python3
"""A gateway dies behind nginx; its client resumes on the other one, losing nothing.

Two gateways behind nginx (deploy/nginx.conf). A client streams a room
through nginx and gets some events; the gateway serving it is killed with
SIGKILL; nginx ends the client's stream. Events are published while the
client is away (they reach the broker's history) and after it is back. The
client reconnects through nginx with Last-Event-ID of the last event it got;
nginx sends it to the surviving gateway, and it receives every event
published after the kill exactly once, in order, and nothing it had already.
"""
import json
import signal
import sys
import time

from harness import Closed, Cluster, SSEStream, http_request, id_gseq, run_tests, streams_open, wait_until

ROOM = "failover-room"


def event(n):
    return {"type": "message.created", "room_id": ROOM, "message": {"text": f"message {n}"}, "n": n}


def read_events(s, count, timeout):
    """count events from s; comments are skipped, a stream.reset fails the test."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {len(got)} of {count} events in {timeout}s: {[d.get('n') for _, d in got]}")
        ev_id, data = s.next_event(left)
        assert data.get("type") != "stream.reset", f"unexpected {data} (id {ev_id})"
        got.append((ev_id, data))
    return got


def test_killed_gateway_client_resumes_on_the_other():
    with Cluster("failover") as c:
        c.start_broker()
        gw_a, port_a = c.start_gateway("gateway-a")
        gw_b, port_b = c.start_gateway("gateway-b")
        _, lb = c.start_nginx("nginx", [port_a, port_b])
        gateways = {port_a: gw_a, port_b: gw_b}

        # 1. a client through nginx; find the gateway that serves it
        s = SSEStream(lb, f"/api/v1/events?room_id={ROOM}")
        assert s.status == 200, f"status {s.status}"
        serving = wait_until("the stream to show up on a gateway",
                             lambda: next((p for p in gateways if streams_open(p) == 1), None), timeout=5)
        other = port_b if serving == port_a else port_a

        # 2. events before the kill, published through nginx
        before = []
        for n in range(1, 6):
            status, _, body = http_request(lb, "POST", "/api/v1/events", event(n))
            assert status == 201, f"POST {n}: {status} {body!r}"
            before.append(json.loads(body)["id"])
        got = read_events(s, 5, timeout=5)
        assert [d["n"] for _, d in got] == [1, 2, 3, 4, 5], got
        assert [i for i, _ in got] == before, f"ids {got} are not the POSTs' {before}"
        last_id = got[-1][0]

        # 3. SIGKILL the serving gateway: nginx ends the client's stream
        gateways[serving].kill(signal.SIGKILL)
        try:
            item = s.next(5)
            raise AssertionError(f"the stream went on after its gateway died: {item}")
        except Closed:
            pass
        except TimeoutError:
            raise AssertionError("nginx kept the stream of a dead gateway open for 5s") from None
        s.close()

        # 4. events while the client is away (they reach it by replay) ...
        away = c.publish_cli([event(n) for n in range(6, 11)])

        # 5. ... it reconnects through nginx with the last id it got ...
        s = SSEStream(lb, f"/api/v1/events?room_id={ROOM}", headers={"Last-Event-ID": last_id})
        assert s.status == 200, f"reconnect: status {s.status}"
        wait_until("the resumed stream on the surviving gateway", lambda: streams_open(other) == 1, timeout=5)

        # 6. ... and more events after it is back, through nginx (the dead gateway is skipped)
        live = []
        for n in range(11, 16):
            status, _, body = http_request(lb, "POST", "/api/v1/events", event(n))
            assert status == 201, f"POST {n} after the kill: {status} {body!r}"
            live.append(json.loads(body)["id"])

        got = read_events(s, 10, timeout=10)
        assert [d["n"] for _, d in got] == list(range(6, 16)), f"got {[d['n'] for _, d in got]}"
        assert [i for i, _ in got] == away + live, f"ids {[i for i, _ in got]} != published {away + live}"
        gseqs = [id_gseq(i) for i, _ in got]
        assert gseqs == sorted(set(gseqs)) and gseqs[0] > id_gseq(last_id), f"ids out of order: {gseqs}"
        # nothing more: no duplicate trails behind
        try:
            extra = s.next_event(0.5)
            raise AssertionError(f"an event after the last one published: {extra}")
        except TimeoutError:
            pass
        s.close()
        print(f"  killed :{serving}; resumed on :{other} after {last_id}: events 6..15 once, in order")


if __name__ == "__main__":
    sys.exit(run_tests([test_killed_gateway_client_resumes_on_the_other]))
