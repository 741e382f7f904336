#!/usr/bin/env bash
# fanout.sh - one fan-out scenario: N SSE streams over R rooms, a publisher at
# E events/s for S seconds, one JSON line with both results.
#
#   bench/fanout.sh --nchan [options]              against a private nginx+nchan
#   bench/fanout.sh --target 127.0.0.1:8080 [...]  against a running roomcast gateway
#
# Options (defaults): --conns 1000 --rooms 100 --rate 1000 --duration 5 (integers),
# --server-pid PIDS (roomcast; nchan's are found), --bench BINARY
# (ROOMCAST_BENCH or /tmp/build-bench/bench/roomcast-bench), --extra-sub "ARGS",
# --extra-pub "ARGS" (passed through). Prints
#   {"scenario":{...},"publish":{...},"subscribe":{...}}
# Subscribers are ready (bench --ready-file) before publishing starts; every
# wait is bounded and the nginx this script starts is always stopped. Exit 1
# when either bench run failed (its JSON is still printed), 2 on bad usage.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bench=${ROOMCAST_BENCH:-/tmp/build-bench/bench/roomcast-bench}
nchan=0 target=127.0.0.1:8080 conns=1000 rooms=100 rate=1000 duration=5 pids= extra_sub= extra_pub=

die() { echo "fanout.sh: $*" >&2; exit 2; }
int() { [[ $2 =~ ^[0-9]+$ ]] && [ "$2" -gt 0 ] || die "$1 must be a positive integer"; echo "$2"; }

while [ $# -gt 0 ]; do
	case $1 in
	--nchan) nchan=1; shift; continue ;;
	--target) target=$2 ;;
	--conns) conns=$(int "$1" "$2") ;;
	--rooms) rooms=$(int "$1" "$2") ;;
	--rate) rate=$(int "$1" "$2") ;;
	--duration) duration=$(int "$1" "$2") ;;
	--server-pid) pids=$2 ;;
	--bench) bench=$2 ;;
	--extra-sub) extra_sub=$2 ;;
	--extra-pub) extra_pub=$2 ;;
	*) die "unknown option $1" ;;
	esac
	[ $# -ge 2 ] || die "$1 needs a value"
	shift 2
done
[ -x "$bench" ] || die "no bench binary at $bench"

dir=$(mktemp -d /tmp/rcb-fanout.XXXXXX)
sub_pid=
cleanup() {
	if [ -n "$sub_pid" ]; then kill "$sub_pid" 2>/dev/null || true; wait "$sub_pid" 2>/dev/null || true; fi
	[ "$nchan" -eq 1 ] && "$here/nchan.sh" stop "$dir"
	rm -rf "$dir"
}
trap cleanup EXIT

sub_tmpl='/api/v1/events?room_id=%s' pub_tmpl='/api/v1/events' server=roomcast
if [ "$nchan" -eq 1 ]; then
	target=127.0.0.1:$("$here/nchan.sh" start "$dir")
	pids=$("$here/nchan.sh" pids "$dir")
	sub_tmpl='/sub/%s' pub_tmpl='/pub/%s' server=nchan
fi

events=$((rate * duration))
expect=$((events / rooms))
[ "$expect" -gt 0 ] || die "rate x duration must be at least --rooms"
# Streams stop at --expect; the bound covers connecting, publishing and a slow drain.
sub_bound=$((duration + conns / 2000 + 30))

# shellcheck disable=SC2086 # extra args are word-split on purpose
"$bench" subscribe --target "$target" --url-template "$sub_tmpl" --conns "$conns" \
	--rooms "$rooms" --expect "$expect" --duration "$sub_bound" --ready-file "$dir/ready" \
	${pids:+--server-pid "$pids"} $extra_sub >"$dir/sub.json" &
sub_pid=$!
ready_polls=$(( (conns / 1000 + 10) * 20 ))
for ((i = 0; i < ready_polls; i++)); do
	[ -f "$dir/ready" ] && break
	kill -0 "$sub_pid" 2>/dev/null || break
	sleep 0.05
done
[ -f "$dir/ready" ] || die "subscribers not ready"
pub_rc=0 sub_rc=0

# shellcheck disable=SC2086
"$bench" publish --target "$target" --url-template "$pub_tmpl" --rooms "$rooms" \
	--rate "$rate" --duration "$duration" $extra_pub >"$dir/pub.json" || pub_rc=$?
wait "$sub_pid" || sub_rc=$?
sub_pid=

printf '{"scenario":{"server":"%s","conns":%d,"rooms":%d,"rate":%d,"duration_s":%d,"expect":%d},"publish":%s,"subscribe":%s}\n' \
	"$server" "$conns" "$rooms" "$rate" "$duration" "$expect" \
	"$(cat "$dir/pub.json")" "$(cat "$dir/sub.json")"
# Non-zero when either side could not be set up or measured nothing.
[ "$pub_rc" -eq 0 ] && [ "$sub_rc" -eq 0 ]
