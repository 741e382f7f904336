#!/usr/bin/env bash
# nchan.sh - start and stop a private nginx+nchan for roomcast-bench.
#
#   bench/nchan.sh start DIR [PORT]   write DIR/nginx.conf, start nginx, print the port
#   bench/nchan.sh stop DIR           stop the nginx started in DIR (by its pid file)
#   bench/nchan.sh pids DIR           print "master,worker" pids (for --server-pid)
#
# Env: NCHAN_PING_S (eventsource ping interval, seconds; default 15).
# Only 127.0.0.1 is used. Every wait is bounded.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)

die() { echo "nchan.sh: $*" >&2; exit 1; }

port_free() { [ -z "$(ss -Hltn "( sport = :$1 )" 2>/dev/null)" ]; }

wait_listening() { # port deadline_s
	local i
	for ((i = 0; i < $2 * 20; i++)); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.05
	done
	return 1
}

start() {
	local dir=$1 port=${2:-} tries
	mkdir -p "$dir"
	dir=$(cd "$dir" && pwd)
	[ -f "$dir/nginx.pid" ] && kill -0 "$(cat "$dir/nginx.pid")" 2>/dev/null &&
		die "an nginx already runs from $dir"
	for ((tries = 0; tries < 20; tries++)); do
		if [ -z "$port" ] || [ "$tries" -gt 0 ]; then
			port=$((20000 + RANDOM % 20000))
		fi
		port_free "$port" || continue
		sed -e "s|@DIR@|$dir|g" -e "s|@PORT@|$port|g" -e "s|@PING_S@|${NCHAN_PING_S:-15}|g" \
			"$here/nchan.conf.in" >"$dir/nginx.conf"
		if nginx -e "$dir/error.log" -c "$dir/nginx.conf" -p "$dir" 2>>"$dir/start.log" &&
			wait_listening "$port" 5; then
			echo "$port" >"$dir/port"
			echo "$port"
			return 0
		fi
		stop "$dir" >/dev/null 2>&1 || true
	done
	die "could not start nginx (see $dir/error.log, $dir/start.log)"
}

stop() {
	local dir=$1 pid i
	[ -f "$dir/nginx.pid" ] || return 0
	pid=$(cat "$dir/nginx.pid")
	kill -TERM "$pid" 2>/dev/null || { rm -f "$dir/nginx.pid"; return 0; }
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || { rm -f "$dir/nginx.pid"; return 0; }
		sleep 0.05
	done
	kill -KILL "$pid" 2>/dev/null || true
	rm -f "$dir/nginx.pid"
}

pids() {
	local dir=$1 master workers
	master=$(cat "$dir/nginx.pid")
	workers=$(ps --ppid "$master" -o pid= | tr -d ' ' | paste -sd, -)
	echo "$master${workers:+,$workers}"
}

case "${1:-}" in
start) [ $# -ge 2 ] || die "usage: nchan.sh start DIR [PORT]"; start "$2" "${3:-}" ;;
stop) [ $# -eq 2 ] || die "usage: nchan.sh stop DIR"; stop "$2" ;;
pids) [ $# -eq 2 ] || die "usage: nchan.sh pids DIR"; pids "$2" ;;
*) die "usage: nchan.sh start|stop|pids DIR" ;;
esac
