#!/usr/bin/env bash
# nats.sh - start and stop private nats-servers (JetStream) for the broker's
# --store nats in the benches (bench/compare --store nats-r1|nats-r3,
# bench/nats-api).
#
#   bench/nats.sh start DIR N   start N (1 or 3) nats-servers on free 127.0.0.1
#                               ports, their stores in DIR/nK; with 3, a cluster
#                               (routes on loopback), ready once it has a
#                               JetStream meta leader. Prints the client URLs,
#                               comma-separated (for the broker's --nats-url).
#   bench/nats.sh stop DIR      stop the servers started in DIR (by their pid
#                               files): SIGTERM, SIGKILL after 5 s
#   bench/nats.sh pids DIR      print their pids, comma-separated
#
# Needs nats-server (Debian's package). Only 127.0.0.1 is used. Every wait
# is bounded; a start that fails stops what it started.
set -euo pipefail

die() { echo "nats.sh: $*" >&2; exit 1; }

free_ports() { # n: n distinct free ports, all bound at once, then released
	python3 -c 'import socket,sys
s=[socket.socket() for _ in range(int(sys.argv[1]))]
for x in s: x.bind(("127.0.0.1",0))
print(" ".join(str(x.getsockname()[1]) for x in s))' "$1"
}

wait_log() { # file pattern deadline_s
	local i
	for ((i = 0; i < $3 * 20; i++)); do
		grep -q "$2" "$1" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

start() {
	local dir=$1 n=$2 ports i k urls="" routes="" args
	case "$n" in 1 | 3) ;; *) die "N must be 1 or 3" ;; esac
	command -v nats-server >/dev/null || die "nats-server is not installed (scripts/install-deps)"
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	for ((k = 1; k <= 3; k++)); do
		[ -f "$dir/n$k.pid" ] && kill -0 "$(cat "$dir/n$k.pid")" 2>/dev/null &&
			die "a nats-server already runs from $dir"
	done
	read -ra ports <<<"$(free_ports $((2 * n)))"
	if [ "$n" -eq 3 ]; then
		routes="nats://127.0.0.1:${ports[3]},nats://127.0.0.1:${ports[4]},nats://127.0.0.1:${ports[5]}"
	fi
	for ((i = 0; i < n; i++)); do
		k=$((i + 1))
		mkdir -p "$dir/n$k"
		args=(-js -a 127.0.0.1 -p "${ports[$i]}" -sd "$dir/n$k" -n "n$k")
		[ "$n" -eq 3 ] && args+=(--cluster "nats://127.0.0.1:${ports[$((n + i))]}"
			--cluster_name bench --routes "$routes")
		# no inherited descriptors: a caller reading this script's output
		# must see its end when the script exits
		nats-server "${args[@]}" </dev/null >"$dir/n$k.log" 2>&1 &
		echo $! >"$dir/n$k.pid"
		urls+="${urls:+,}nats://127.0.0.1:${ports[$i]}"
	done
	for ((k = 1; k <= n; k++)); do
		wait_log "$dir/n$k.log" "Server is ready" 15 ||
			{ stop "$dir"; die "nats-server n$k did not start (see $dir/n$k.log)"; }
	done
	if [ "$n" -eq 3 ]; then
		# the broker's first JetStream request needs a meta leader
		for ((i = 0; i < 600; i++)); do
			cat "$dir"/n?.log | grep -q "JetStream cluster new metadata leader\|Self is new JetStream cluster metadata leader" && break
			sleep 0.05
		done
		[ "$i" -lt 600 ] || { stop "$dir"; die "no JetStream meta leader within 30 s (see $dir/n?.log)"; }
	fi
	echo "$urls" >"$dir/urls"
	echo "$urls"
}

stop() {
	local dir=$1 f pid i
	for f in "$dir"/n?.pid; do
		[ -f "$f" ] || continue
		pid=$(cat "$f")
		kill -TERM "$pid" 2>/dev/null || { rm -f "$f"; continue; }
		for ((i = 0; i < 100; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.05
		done
		kill -KILL "$pid" 2>/dev/null || true
		rm -f "$f"
	done
}

pids() {
	local dir=$1 f out=""
	for f in "$dir"/n?.pid; do
		[ -f "$f" ] && out+="${out:+,}$(cat "$f")"
	done
	echo "$out"
}

case "${1:-}" in
start) [ $# -eq 3 ] || die "usage: nats.sh start DIR N"; start "$2" "$3" ;;
stop) [ $# -eq 2 ] || die "usage: nats.sh stop DIR"; stop "$2" ;;
pids) [ $# -eq 2 ] || die "usage: nats.sh pids DIR"; pids "$2" ;;
*) die "usage: nats.sh start DIR N | stop DIR | pids DIR" ;;
esac
