#!/usr/bin/env python3
"""The seed scenario: heartbeats keep an idle stream alive through nginx.

nginx (deploy/nginx.conf with proxy_read_timeout 1s) in front of a gateway:
- with --heartbeat-ms 300 an idle stream stays open for 5 s (": ping"
  comments keep nginx's read timer from firing), then a published event
  arrives on it;
- with --heartbeat-ms 0 the same stream is cut by nginx after about 1 s.
"""
import json
import sys
import time

from harness import Closed, Cluster, SSEStream, http_request, run_tests

READ_TIMEOUT = 1.0  # nginx proxy_read_timeout of this test
IDLE = 5.0          # how long the stream stays idle


def open_stream(port, room):
    s = SSEStream(port, f"/api/v1/events?room_id={room}")
    assert s.status == 200, f"status {s.status}"
    assert s.headers.get("content-type", "").startswith("text/event-stream"), s.headers
    assert s.next(2) == ("comment", "connected"), "the stream does not start with ': connected'"
    assert s.next(2)[0] == "retry"
    return s


def test_heartbeat_keeps_stream_open_through_nginx():
    with Cluster("heartbeat") as c:
        c.start_broker()
        _, gw = c.start_gateway("gateway", "--heartbeat-ms", "300")
        _, lb = c.start_nginx("nginx", [gw], read_timeout=f"{READ_TIMEOUT:g}s")

        s = open_stream(lb, "hb-room")
        start = time.monotonic()
        pings = 0
        try:
            while time.monotonic() - start < IDLE:
                item = s.next(max(IDLE - (time.monotonic() - start), 0.001))
                assert item == ("comment", "ping"), f"an idle stream got {item}"
                pings += 1
        except TimeoutError:
            pass  # IDLE seconds are over
        except Closed:
            raise AssertionError(f"nginx closed the stream after {time.monotonic() - start:.2f}s "
                                 f"despite {pings} pings") from None
        # 300 ms heartbeats for 5 s: about 16; far fewer would mean the timer is wrong
        assert pings >= 10, f"only {pings} pings in {IDLE}s with --heartbeat-ms 300"

        event = {"type": "message.created", "room_id": "hb-room", "message": {"text": "after the quiet"}}
        status, _, body = http_request(lb, "POST", "/api/v1/events", event)
        assert status == 201, f"POST through nginx: {status} {body!r}"
        ev_id, data = s.next_event(3)
        assert data == event, f"got {data}"
        assert ev_id == json.loads(body)["id"], f"id {ev_id} is not the POST's {body!r}"
        s.close()
        print(f"  the stream stayed open {IDLE:g}s behind proxy_read_timeout {READ_TIMEOUT:g}s with {pings} pings, "
              f"then got {ev_id}")


def test_without_heartbeat_nginx_cuts_the_stream():
    with Cluster("no-heartbeat") as c:
        c.start_broker()
        _, gw = c.start_gateway("gateway", "--heartbeat-ms", "0")
        nginx, lb = c.start_nginx("nginx", [gw], read_timeout=f"{READ_TIMEOUT:g}s")

        s = open_stream(lb, "hb-room")
        start = time.monotonic()
        try:
            item = s.next(IDLE)
            raise AssertionError(f"expected nothing until nginx cuts the stream, got {item}")
        except Closed:
            pass
        except TimeoutError:
            raise AssertionError(f"nginx did not cut an idle stream within {IDLE}s "
                                 f"(proxy_read_timeout {READ_TIMEOUT:g}s)") from None
        after = s.closed_at - start
        s.close()
        # cut by the read timeout: not before it, and not long after
        assert READ_TIMEOUT * 0.8 <= after <= READ_TIMEOUT + 1.5, f"the stream was cut after {after:.2f}s"
        with open(nginx.error_log, encoding="utf-8", errors="replace") as f:
            assert "upstream timed out" in f.read(), "nginx's error log does not say the upstream timed out"
        print(f"  nginx cut the stream after {after:.2f}s (proxy_read_timeout {READ_TIMEOUT:g}s)")


if __name__ == "__main__":
    sys.exit(run_tests([test_heartbeat_keeps_stream_open_through_nginx, test_without_heartbeat_nginx_cuts_the_stream]))
