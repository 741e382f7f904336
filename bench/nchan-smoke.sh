#!/usr/bin/env bash
# nchan-smoke.sh - end-to-end check of roomcast-bench against nginx+nchan.
#
#   bench/nchan-smoke.sh [BENCH_BINARY]
#
# Starts a private nginx+nchan on a free loopback port, opens 100 SSE streams
# over 10 rooms, publishes 1000 events/s for 5 s, and checks that every stream
# got every event of its room (500) with no gap, duplicate or failure. Prints
# both JSON results; exits non-zero on any mismatch. Always stops its nginx.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bench=${1:-${ROOMCAST_BENCH:-/tmp/build-bench/bench/roomcast-bench}}
[ -x "$bench" ] || { echo "nchan-smoke: no bench binary at $bench" >&2; exit 2; }

dir=$(mktemp -d /tmp/rcb-nchan-smoke.XXXXXX)
sub_pid=
cleanup() {
	if [ -n "$sub_pid" ]; then kill "$sub_pid" 2>/dev/null || true; wait "$sub_pid" 2>/dev/null || true; fi
	"$here/nchan.sh" stop "$dir" || true
	rm -rf "$dir"
}
trap cleanup EXIT

port=$("$here/nchan.sh" start "$dir")
"$bench" subscribe --target "127.0.0.1:$port" --url-template '/sub/%s' \
	--conns 100 --rooms 10 --expect 500 --duration 20 \
	--ready-file "$dir/ready" --server-pid "$("$here/nchan.sh" pids "$dir")" \
	>"$dir/sub.json" &
sub_pid=$!

for ((i = 0; i < 200; i++)); do [ -f "$dir/ready" ] && break; sleep 0.05; done
[ -f "$dir/ready" ] || { echo "nchan-smoke: subscribers not ready within 10 s" >&2; exit 1; }

"$bench" publish --target "127.0.0.1:$port" --url-template '/pub/%s' \
	--rooms 10 --rate 1000 --duration 5 >"$dir/pub.json"
wait "$sub_pid"
sub_pid=

cat "$dir/pub.json" "$dir/sub.json"

# field FILE KEY: the first top-level number "KEY":N of a one-line JSON file.
field() { grep -o "\"$2\":[0-9.]*" "$1" | head -1 | cut -d: -f2; }

fail=0
check() { # file key expected
	local got
	got=$(field "$1" "$2")
	if [ "$got" != "$3" ]; then
		echo "nchan-smoke: $2 = $got, want $3" >&2
		fail=1
	fi
}
check "$dir/pub.json" acked 5000
check "$dir/pub.json" errors 0
check "$dir/sub.json" connected 100
check "$dir/sub.json" complete 100
check "$dir/sub.json" events 50000
check "$dir/sub.json" gaps 0
check "$dir/sub.json" dups 0
check "$dir/sub.json" events_unparsed 0
check "$dir/sub.json" other_room 0
[ "$fail" -eq 0 ] && echo "nchan-smoke: ok"
exit "$fail"
