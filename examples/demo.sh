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
cleanup() {
	[ -n "$events_pid" ] && kill "$events_pid" 2>/dev/null || true
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

step "done"
cat <<'TXT'
Built today: the fulcrum binary, the whole-node HCL config with validation, the agent lifecycle
(signals, reload that never half-applies), the control API and CLI, journald logging, sd_notify,
metrics, and the test beds (network namespaces, a real journald, the IPVS kernel lab).
Not built yet: VRRP, kernel IPVS programming, health checks and the L7 proxy. The two-node pair demo
(election, L4 and L7 traffic, failover drills) replaces this script when they land.
TXT
