#!/usr/bin/env bash
# make demo: what Fulcrum does today, end to end on this machine, in a few seconds.
#
# It validates configs (a good one and one with mistakes), starts the node agent on a private control
# socket, asks it for status, rejects a bad reload while the old config keeps serving, applies a good
# reload, shows the event stream and the metrics, and stops the agent cleanly. Nothing is left behind.
#
# The full active/passive pair (VRRP, kernel IPVS in the lab guest, health checks, the L7 proxy and
# failover drills) replaces this script when those parts land; until then it says so at the end.
set -euo pipefail

bin=$(readlink -f "${1:-bin/fulcrum}")
work=$(mktemp -d /tmp/fulcrum-demo.XXXXXX)
agent_pid=""
events_pid=""
pair_pids=()
cleanup() {
	[ -n "$events_pid" ] && kill "$events_pid" 2>/dev/null || true
	for p in "${pair_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pair_pids[@]}"; do wait "$p" 2>/dev/null || true; done
	for ns in fl-demo-lb1 fl-demo-lb2 fl-demo-client fl-demo-sw; do ip netns del "$ns" 2>/dev/null || true; done
	if [ -n "$agent_pid" ] && kill -0 "$agent_pid" 2>/dev/null; then
		kill -TERM "$agent_pid" 2>/dev/null || true
		wait "$agent_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
fail() { printf '\033[31mDEMO FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

sock="$work/fulcrum.sock"
port=$(( 20000 + RANDOM % 20000 ))
write_config() { # name level
	cat >"$work/node.hcl" <<HCL
node "$1" {}
control {
  socket = "$sock"
}
metrics {
  listen = "127.0.0.1:$port"
}
log {
  level  = "$2"
  target = "stderr"
}
HCL
}

step "fulcrum version"
"$bin" version

step "validate the example config"
"$bin" validate examples/node.hcl || fail "examples/node.hcl should be valid"

step "validate a config with three mistakes (every problem is reported, with file:line:col)"
cat >"$work/broken.hcl" <<'HCL'
node "lb1" {}
control {
  sockett = "/run/fulcrum/fulcrum.sock"
}
log {
  level = "loud"
}
metrics {
  listen = "127.0.0.1:99999"
}
HCL
if "$bin" validate "$work/broken.hcl"; then fail "broken.hcl should be rejected"; fi

step "start the agent"
write_config lb1 info
"$bin" agent -config "$work/node.hcl" 2>"$work/agent.log" &
agent_pid=$!
for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
[ -S "$sock" ] || { cat "$work/agent.log"; fail "agent did not open its control socket"; }
"$bin" events -socket "$sock" >"$work/events.log" 2>&1 &
events_pid=$!
"$bin" status -socket "$sock"

step "reload with a broken config: rejected, the old config keeps serving"
printf 'node "lb1" {\n  bogus = 1\n}\n' >"$work/node.hcl"
if "$bin" reload -socket "$sock"; then fail "a bad reload must be rejected"; fi
"$bin" status -socket "$sock" | grep -q 'lb1' || fail "status lost the old config"

step "reload with a good config (node renamed, debug logging)"
write_config lb1-renamed debug
"$bin" reload -socket "$sock" || fail "a good reload must be applied"
"$bin" status -socket "$sock"

step "metrics (Prometheus text format)"
exec 3<>"/dev/tcp/127.0.0.1/$port"
printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
grep '^fulcrum_' <&3 || fail "no fulcrum_ metrics"
exec 3>&-

step "event stream (fulcrum events)"
sleep 0.3
cat "$work/events.log"

step "stop the agent (SIGTERM: ordered shutdown, control socket removed)"
kill -TERM "$agent_pid"
wait "$agent_pid" || fail "agent exited non-zero"
agent_pid=""
[ -S "$sock" ] && fail "control socket left behind"
tail -n 5 "$work/agent.log"


# ---------------------------------------------------------------------------------------------
# Part 2: an active/passive VRRP pair in network namespaces (needs root).
# lb1 (priority 200) and lb2 (priority 100) float VIP 192.0.2.50 on a bridge; a client pings it.
# ---------------------------------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
	echo "skipping the VRRP pair: it needs root (network namespaces, raw sockets)"
else
	step "VRRP pair: lb1 (priority 200) and lb2 (priority 100) with VIP 192.0.2.50, a client, one bridge"
	for ns in fl-demo-lb1 fl-demo-lb2 fl-demo-client fl-demo-sw; do ip netns del "$ns" 2>/dev/null || true; done
	ip netns add fl-demo-sw
	ip -n fl-demo-sw link add br0 type bridge
	ip -n fl-demo-sw link set br0 up
	n=0
	for h in lb1 lb2 client; do
		n=$((n + 1))
		case $h in lb1) addr=192.0.2.11 ;; lb2) addr=192.0.2.12 ;; client) addr=192.0.2.100 ;; esac
		ip netns add "fl-demo-$h"
		ip -n fl-demo-sw link add "p-$h" type veth peer name eth0 netns "fl-demo-$h"
		ip -n fl-demo-sw link set "p-$h" master br0 up
		ip -n "fl-demo-$h" link set lo up
		ip -n "fl-demo-$h" addr add "$addr/24" dev eth0
		ip -n "fl-demo-$h" link set eth0 up
	done
	pair_config() { # name priority
		cat >"$work/$1.hcl" <<HCL
node "$1" {}
control {
  socket = "$work/$1.sock"
}
log {
  target = "stderr"
}
vrrp_instance "web" {
  interface         = "eth0"
  virtual_router_id = 51
  priority          = $2
  advert_interval   = "100ms"
  virtual_ips       = ["192.0.2.50/24"]
}
HCL
		"$bin" validate "$work/$1.hcl" >/dev/null || fail "$1.hcl should be valid"
	}
	start_lb() { # name
		ip netns exec "fl-demo-$1" "$bin" agent -config "$work/$1.hcl" 2>>"$work/$1.log" &
		disown $! 2>/dev/null || true
		pair_pids+=($!)
		eval "pid_$1=$!"
		for _ in $(seq 100); do [ -S "$work/$1.sock" ] && return 0; sleep 0.1; done
		cat "$work/$1.log"; fail "$1 did not start"
	}
	has_vip() { ip -n "fl-demo-$1" -o addr show dev eth0 | grep -q ' 192.0.2.50/'; }
	wait_vip() { # name
		for _ in $(seq 100); do has_vip "$1" && return 0; sleep 0.05; done
		fail "$1 never took the VIP"
	}
	# outage: ping the VIP every 10 ms during an action; lost probes x 10 ms is the client-visible gap.
	probe_start() { ip netns exec fl-demo-client ping -n -i 0.01 -W 1 192.0.2.50 >"$work/ping.log" 2>&1 & probe_pid=$!; sleep 0.5; }
	probe_stop() {
		sleep 0.5; kill -INT "$probe_pid"; wait "$probe_pid" 2>/dev/null || true
		local tx rx
		tx=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' "$work/ping.log")
		rx=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' "$work/ping.log")
		[ -n "$tx" ] && [ -n "$rx" ] || { cat "$work/ping.log"; fail "no ping summary"; }
		echo "client-visible outage: $((tx - rx)) of $tx probes lost at 10 ms spacing = ~$(( (tx - rx) * 10 )) ms"
	}
	pair_config lb1 200
	pair_config lb2 100
	start_lb lb1
	start_lb lb2
	wait_vip lb1
	sleep 0.5
	has_vip lb2 && fail "both nodes hold the VIP"
	"$bin" status -socket "$work/lb1.sock" | sed -n '/vrrp/,$p'
	"$bin" status -socket "$work/lb2.sock" | sed -n '/vrrp/,$p'
	ip netns exec fl-demo-client ping -n -c 3 -i 0.2 192.0.2.50 || fail "client cannot reach the VIP"

	step "failover drill under load: fulcrum failover --wait on lb1 (resign with priority 0)"
	probe_start
	"$bin" failover -socket "$work/lb1.sock" -wait -hold 3s web || fail "the drill did not hand over"
	probe_stop
	has_vip lb2 || { "$bin" status -socket "$work/lb2.sock" | sed -n "/vrrp/,/ipvs/p"; "$bin" status -socket "$work/lb1.sock" | sed -n "/vrrp/,/ipvs/p"; ip -n fl-demo-lb2 -o addr show dev eth0; fail "lb2 does not hold the VIP after the drill"; }
	echo "lb1 holds backup for 3 s, then preempts back (priority 200 > 100)"
	wait_vip lb1; sleep 1

	step "crash drill under load: kill -9 of lb1's agent, and lb1's link cut (a dead node stops answering)"
	echo "protocol bound: Master_Down_Interval = 3 x 100 ms + Skew_Time 61 ms = 361 ms (RFC 5798 6.1)"
	probe_start
	kill -9 "$pid_lb1"
	ip -n fl-demo-sw link set p-lb1 down
	wait_vip lb2
	probe_stop
	echo "bringing lb1 back: its agent removes the VIP the crash left behind, then preempts back"
	ip -n fl-demo-sw link set p-lb1 up
	start_lb lb1
	wait_vip lb1
	sleep 0.5
	has_vip lb2 && fail "both nodes hold the VIP after lb1 came back"
	"$bin" status -socket "$work/lb1.sock" | sed -n '/vrrp/,$p'

	step "teardown: agents stopped (priority 0, VIPs removed), namespaces deleted"
	for p in "${pair_pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; wait "$p" 2>/dev/null || true; done
	pair_pids=()
	for ns in fl-demo-lb1 fl-demo-lb2 fl-demo-client fl-demo-sw; do ip netns del "$ns"; done
	echo "ok"
fi

step "done"
cat <<'TXT'
Built today: the fulcrum binary, the whole-node HCL config with validation, the agent lifecycle
(signals, reload that never half-applies), the control API and CLI, journald logging, sd_notify,
metrics, VRRP (keepalived-compatible, with failover drills), and the test beds (network namespaces,
a real journald, keepalived as a peer, the IPVS kernel lab).
Not in this demo yet: L4 traffic through kernel IPVS (in the lab guest), health checks moving weights,
and the L7 proxy; the full pair demo (issue "The pair, end to end") adds them.
TXT
