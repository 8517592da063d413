#!/usr/bin/env bash
# make demo: a complete active/passive Fulcrum pair on this one machine, in a few minutes.
#
# Two load-balancer nodes run `fulcrum agent` with examples/pair/lb1.hcl and lb2.hcl (unchanged,
# beside throwaway certificate and secret files), in front of three application servers and a
# client, each in its own network namespace, on two LANs (front 203.0.113.0/24, back
# 198.51.100.0/24). The demo shows, and checks, each step:
#   0. fulcrum validate: the pair's files, and a file with three mistakes
#   1. the election: lb1 MASTER with both VIPs, lb2 BACKUP
#   2. L4 through kernel IPVS (NAT): the client's connections spread over the app servers
#   3. L7 on the same VIP: HTTP->HTTPS redirect, TLS termination, a sticky session, the stats
#      page, the rate limit answering 429
#   4. a health event: app2 stops, its IPVS weight goes to 0 and traffic avoids it; it comes back
#   5. drills under load: `fulcrum failover` on lb1, then kill -9 of lb1's agent, each with the
#      outage the client saw; lb1 comes back and takes over again
#   6. teardown: nothing left behind (namespaces, processes, files)
# It exits non-zero as soon as a step does not behave.
#
# Kernel IPVS is needed for step 2. Where the host kernel has none (CONFIG_IP_VS unset), the
# whole script re-runs itself in the kernel lab guest (Debian's stock kernel under qemu; see
# lab/kernel), which sees this machine's files, and says so.
#
# Usage (as root; `make demo` builds the three programs first):
#   bash examples/demo.sh [bin/fulcrum [bin/demokit [bin/labrun]]]
set -euo pipefail

cd "$(dirname "$0")/.."
bin=$(readlink -m "${1:-bin/fulcrum}")
kit=$(readlink -m "${2:-bin/demokit}")
labrun=$(readlink -m "${3:-bin/labrun}") # -m: it need not exist (the guest never uses it)

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
say() { printf '   %s\n' "$*"; }
fail() { printf '\033[31mDEMO FAILED: %s\033[0m\n' "$*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "run as root: network namespaces, raw sockets and IPVS need it"
for f in "$bin" "$kit"; do [ -x "$f" ] || fail "$f is missing: run make demo"; done

has_ipvs() { [ -e /proc/net/ip_vs ] || { modprobe ip_vs 2>/dev/null && [ -e /proc/net/ip_vs ]; }; }
if [ -z "${FULCRUM_IN_GUEST:-}" ]; then
	if ! has_ipvs; then
		[ -x "$labrun" ] || fail "$labrun is missing: run make demo"
		step "This kernel ($(uname -r)) has no IPVS: running the demo in the kernel lab guest"
		say "Debian's stock kernel with IPVS modules, under qemu (software emulation: everything is"
		say "slower than on hardware); the guest sees this machine's files and has no network of its own."
		exec "$labrun" -cpus 2 -memory 2048 -timeout 15m -- bash examples/demo.sh "$bin" "$kit"
	fi
	say "this kernel has IPVS: running the demo on this machine"
else
	modprobe crc32c_generic 2>/dev/null || true # busybox-era quirk of the lab: libcrc32c needs it first
	has_ipvs || fail "no IPVS in the lab guest"
	say "in the kernel lab guest: $(uname -r), IPVS loaded"
fi

# ---------------------------------------------------------------------------------------------
# Set-up and teardown
# ---------------------------------------------------------------------------------------------
work=$(mktemp -d /tmp/fulcrum-demo.XXXXXX)
namespaces=(fl-demo-sw fl-demo-lb1 fl-demo-lb2 fl-demo-app1 fl-demo-app2 fl-demo-app3 fl-demo-client)
declare -A pid=()
load_pid=""
made_dirs=()

teardown() {
	[ -n "$load_pid" ] && kill -INT "$load_pid" 2>/dev/null || true
	# Agents first: SIGTERM makes each resign with priority 0 and remove its VIPs.
	for n in lb1 lb2; do [ -n "${pid[$n]:-}" ] && kill -TERM "${pid[$n]}" 2>/dev/null || true; done
	for n in lb1 lb2; do
		[ -n "${pid[$n]:-}" ] || continue
		for _ in $(seq 100); do kill -0 "${pid[$n]}" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "${pid[$n]}" 2>/dev/null || true
	done
	for n in "${!pid[@]}"; do kill -TERM "${pid[$n]}" 2>/dev/null || true; done
	for n in "${!pid[@]}"; do wait "${pid[$n]}" 2>/dev/null || true; done
	pid=()
	# Anything else still running in the demo's namespaces (nothing, normally) is stopped too.
	for ns in "${namespaces[@]}"; do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill -KILL 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
	done
	for d in "${made_dirs[@]}"; do rmdir "$d" 2>/dev/null || true; done
	rm -rf "$work"
}
on_exit() {
	local rc=$?
	if [ "$rc" != 0 ]; then
		for n in lb1 lb2; do
			[ -s "$work/$n/agent.log" ] && { echo "--- last lines of $n's agent log:"; tail -n 25 "$work/$n/agent.log"; }
		done
	fi
	teardown
	exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

in_ns() { local ns=$1; shift; ip netns exec "fl-demo-$ns" "$@"; }
client() { in_ns client "$kit" "$@"; }
# fulcrum CLI against a node's agent (its control socket, as /run/fulcrum/fulcrum.sock there).
ctl() { local n=$1; shift; FULCRUM_SOCKET="$work/$n/run/fulcrum.sock" "$bin" "$@"; }
# grep reads all of ip's output (not grep -q): an early exit would kill ip with SIGPIPE, and
# pipefail would then report a VIP that is there as missing.
has_vip() { ip -n "fl-demo-$1" -o addr show | grep " $2/" >/dev/null; }
wait_until() { # seconds description command...: poll every 0.1 s
	local secs=$1 what=$2; shift 2
	local i
	for i in $(seq $((secs * 10))); do "$@" && return 0; sleep 0.1; done
	fail "$what (waited ${secs}s)"
}
masters() { # prints the nodes holding the front VIP
	local n out=""
	for n in lb1 lb2; do has_vip "$n" 203.0.113.10 && out+="$n "; done
	echo "${out% }"
}
only_master() { [ "$(masters)" = "$1" ] && has_vip "$1" 198.51.100.1 && ! has_vip "$2" 198.51.100.1; }
vrrp_status() { ctl "$1" status | sed -n '/^vrrp/,/^[a-z]/p' | sed '$d'; }

# Processes started in the background are started with `ip netns exec` itself, not through a
# shell function (which would fork a subshell), so that $! is the process that signals reach.
#
# Each node gets its own /run/fulcrum (control socket) and /var/lib/fulcrum (IPVS ownership
# record), as two machines would: a private mount namespace with the node's folders bound there.
# The state folder survives the node's restarts, as /var/lib does.
start_lb() { # node
	local n=$1
	ip netns exec "fl-demo-$n" unshare -m --propagation private sh -c '
		mount --bind "$1/run" /run/fulcrum && mount --bind "$1/state" /var/lib/fulcrum &&
		exec "$2" agent -config "$1/$3.hcl"' sh "$work/$n" "$bin" "$n" >>"$work/$n/agent.log" 2>&1 &
	pid[$n]=$!
	wait_until 30 "$n's agent did not open its control socket" test -S "$work/$n/run/fulcrum.sock"
}
start_app() { # n
	ip netns exec "fl-demo-app$1" "$kit" app -name "app$1" -listen "198.51.100.2$1:8000,198.51.100.2$1:8080" >>"$work/app$1.log" 2>&1 &
	pid[app$1]=$!
	wait_until 20 "app$1 did not start" in_ns "app$1" bash -c "exec 3<>/dev/tcp/198.51.100.2$1/8080" 2>/dev/null
}
load_start() { # url
	rm -f "$work/load.ready"
	ip netns exec fl-demo-client "$kit" load -every 20ms -timeout 500ms -max 3m -ready "$work/load.ready" "$1" >"$work/load.out" 2>&1 &
	load_pid=$!
	wait_until 20 "the client's first request did not succeed" test -e "$work/load.ready"
	sleep 1
}
load_stop() { # max-outage-ms: prints the client's report; fails above the bound
	sleep 1
	kill -INT "$load_pid"
	wait "$load_pid" || { cat "$work/load.out"; fail "the client's load did not recover"; }
	load_pid=""
	sed 's/^/   /' "$work/load.out"
	local ms
	ms=$(sed -n 's/^client-visible outage: \([0-9.]*\)\(m\?s\) .*/\1 \2/p' "$work/load.out" | awk '{ if ($2 == "s") print int($1 * 1000); else print int($1) }')
	if [ -n "$ms" ] && [ "$ms" -gt "$1" ]; then fail "outage ${ms} ms is beyond the ${1} ms this step allows"; fi
}

for ns in "${namespaces[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
for d in /run/fulcrum /var/lib/fulcrum; do [ -d "$d" ] || { mkdir -p "$d"; made_dirs+=("$d"); }; done

# ---------------------------------------------------------------------------------------------
step "0. fulcrum validate: the pair's configuration, and a file with three mistakes"
for n in lb1 lb2; do
	mkdir -p "$work/$n/run" "$work/$n/state"
	cp "examples/pair/$n.hcl" "$work/$n/"
done
stats_pass=$("$kit" files "$work/lb1")
cp -r "$work/lb1/tls" "$work/lb1/secrets" "$work/lb2/" # one certificate, one sticky key for the pair
"$bin" validate "$work/lb1/lb1.hcl" "$work/lb2/lb2.hcl" || fail "the pair's files should be valid"
cat >"$work/broken.hcl" <<'HCL'
node "lb1" {}
vrrp_instance "vi_front" {
  interface         = "eth0"
  virtual_router_id = 300
  priorty           = 200
  virtual_ips       = ["203.0.113.10/24"]
}
virtual_server "api" {
  address   = "203.0.113.10:8000"
  scheduler = "fastest"
}
HCL
if "$bin" validate "$work/broken.hcl"; then fail "broken.hcl should be rejected"; fi

# ---------------------------------------------------------------------------------------------
step "1. the election: lb1 (priority 200) and lb2 (priority 100), VIPs 203.0.113.10 and 198.51.100.1"
ip netns add fl-demo-sw
for br in front back; do
	ip -n fl-demo-sw link add "br-$br" type bridge
	ip -n fl-demo-sw link set "br-$br" up
done
plug() { # host ifname bridge address [gateway]
	local h=$1 ifn=$2 br=$3
	ip -n fl-demo-sw link add "$h-$ifn" type veth peer name "$ifn" netns "fl-demo-$h"
	ip -n fl-demo-sw link set "$h-$ifn" master "br-$br" up
	ip -n "fl-demo-$h" addr add "$4" dev "$ifn"
	ip -n "fl-demo-$h" link set "$ifn" up
	[ -z "${5:-}" ] || ip -n "fl-demo-$h" route add default via "$5"
}
for h in lb1 lb2 app1 app2 app3 client; do
	ip netns add "fl-demo-$h"
	ip -n "fl-demo-$h" link set lo up
done
plug lb1 eth0 front 203.0.113.2/24
plug lb1 eth1 back 198.51.100.2/24
plug lb2 eth0 front 203.0.113.3/24
plug lb2 eth1 back 198.51.100.3/24
for i in 1 2 3; do plug "app$i" eth0 back "198.51.100.2$i/24" 198.51.100.1; done
plug client eth0 front 203.0.113.100/24
for n in lb1 lb2; do in_ns "$n" sysctl -qw net.ipv4.ip_forward=1; done # IPVS NAT forwards the replies
for i in 1 2 3; do start_app "$i"; done
say "namespaces: lb1 lb2 (eth0 front, eth1 back), app1-3 on the back LAN (gateway 198.51.100.1), client on the front LAN"
say "app servers answer their name on :8000 (the L4 service) and :8080 (the proxy's backend)"

start_lb lb1
wait_until 30 "lb1 did not become master" only_master lb1 lb2
start_lb lb2
sleep 2
only_master lb1 lb2 || fail "expected lb1 alone to hold the VIPs, got: $(masters)"
say "lb1\$ fulcrum status"
ctl lb1 status | sed 's/^/   /'
say "lb2\$ fulcrum status (vrrp)"
vrrp_status lb2 | sed 's/^/   /'
[ "$(vrrp_status lb2 | grep -c '^ *instance .*: BACKUP$')" = 2 ] || fail "lb2 should report both instances BACKUP"

# ---------------------------------------------------------------------------------------------
step "2. L4 through kernel IPVS: http://203.0.113.10:8000/ (NAT, wlc) from the client"
client spread -n 30 -min-servers 3 http://203.0.113.10:8000/ | sed 's/^/   /' || fail "IPVS did not spread the connections"
if command -v ipvsadm >/dev/null; then
	say "lb1# ipvsadm -Ln (the kernel's own view, as an independent witness)"
	in_ns lb1 ipvsadm -Ln | sed 's/^/   /'
fi

# ---------------------------------------------------------------------------------------------
step "3. L7 on the same VIP: the embedded proxy on :80 and :443"
say "client\$ GET http://203.0.113.10/  (plain HTTP is redirected)"
client get -expect 301 http://203.0.113.10/ | sed 's/^/   /' || fail "no redirect to https"
say "client\$ GET https://203.0.113.10/  (TLS terminated by Fulcrum)"
client get -expect 200 https://203.0.113.10/ | sed 's/^/   /' || fail "HTTPS through the proxy failed"
say "a sticky session (cookie SRV, signed; a new connection per request):"
client sticky -n 10 https://203.0.113.10/ | sed 's/^/   /' || fail "the sticky session moved"
say "stats page: https://203.0.113.10/stats  user admin, password $stats_pass (secrets/stats.pass)"
client get -expect 401 -user admin -pass wrong https://203.0.113.10/stats | sed 's/^/   /' || fail "a wrong password was not refused"
client get -expect 200 -user admin -pass "$stats_pass" https://203.0.113.10/stats | sed 's/^/   /' || fail "the stats page did not answer"
say "rate limit: 50 requests per 10 s per client address (this client already used some)"
client burst -n 60 https://203.0.113.10/ | sed 's/^/   /' || fail "the rate limit did not answer 429"

# ---------------------------------------------------------------------------------------------
step "4. a health event: app2 stops; its checks fail and its weight goes to 0"
app2_weight() { # prints app2's IPVS weight as lb1's agent reports it
	ctl lb1 status | sed -n 's/^ *app2 198\.51\.100\.22:8000 [a-z]*: weight \([0-9]*\).*/\1/p'
}
weight_is() { [ "$(app2_weight)" = "$1" ]; }
kill -TERM "${pid[app2]}"; wait "${pid[app2]}" 2>/dev/null || true; unset 'pid[app2]'
t0=$(date +%s%N)
wait_until 20 "app2's weight did not go to 0" weight_is 0
say "app2 drained $(( ($(date +%s%N) - t0) / 1000000 )) ms after it stopped (tcp check every 1 s, fall 2)"
ctl lb1 status | grep -E '198\.51\.100\.22' | sed 's/^/   lb1$ fulcrum status | grep 198.51.100.22:  /' || true
if command -v ipvsadm >/dev/null; then in_ns lb1 ipvsadm -Ln | grep 198.51.100.22 | sed 's/^/   lb1# ipvsadm -Ln | grep app2:  /'; fi
client spread -n 20 -min-servers 2 -avoid app2 http://203.0.113.10:8000/ | sed 's/^/   /' || fail "traffic still reached app2"
say "app2 comes back"
start_app 2
wait_until 20 "app2's weight did not come back" weight_is 1
client spread -n 30 -min-servers 3 http://203.0.113.10:8000/ | sed 's/^/   /' || fail "app2 did not get traffic again"

# ---------------------------------------------------------------------------------------------
step "5a. failover drill under load: lb1\$ fulcrum failover -all -wait -hold 5s"
say "the client requests http://203.0.113.10:8000/ every 20 ms, a new connection each (timeout 500 ms)"
load_start http://203.0.113.10:8000/
ctl lb1 failover -all -wait -hold 5s | sed 's/^/   /' || fail "the drill did not hand over"
only_master lb2 lb1 || fail "after the drill lb2 should hold both VIPs, got: $(masters)"
load_stop 3000
say "lb1 preempts back (priority 200 > 100) once the 5 s hold and its preempt_delay of 10 s, restarted"
say "when it became backup (as keepalived does), have both run out"
t0=$(date +%s%N)
wait_until 30 "lb1 did not take the VIPs back" only_master lb1 lb2
say "lb1 is master again after $(( ($(date +%s%N) - t0) / 1000000 )) ms"

step "5b. crash drill under load: lb1's links cut and its agent killed (kill -9): a dead node"
say "protocol bound: Master_Down_Interval = 3 x 100 ms + Skew_Time (256-100)/256 x 100 ms = 361 ms (RFC 5798 6.1)"
load_start http://203.0.113.10:8000/
# Links first, then the agent: a node that dies stops forwarding at once, whereas a killed agent
# alone leaves its kernel forwarding to IPVS with the VIPs still on.
ip -n fl-demo-sw link set lb1-eth0 down
ip -n fl-demo-sw link set lb1-eth1 down
kill -KILL "${pid[lb1]}"; wait "${pid[lb1]}" 2>/dev/null || true; unset 'pid[lb1]'
wait_until 10 "lb2 did not take over from the dead lb1" has_vip lb2 203.0.113.10
load_stop 3000
say "lb1 comes back: its agent removes the VIPs the crash left, adopts its IPVS services, and"
say "preempts after preempt_delay (10 s), once its checks and proxy are up"
ip -n fl-demo-sw link set lb1-eth0 up
ip -n fl-demo-sw link set lb1-eth1 up
start_lb lb1
wait_until 10 "lb1's agent did not remove the VIPs the crash left behind" bash -c "! ip -n fl-demo-lb1 -o addr show | grep ' 203.0.113.10/' >/dev/null"
say "lb1 is backup with its stale VIPs removed; waiting for its preempt_delay"
wait_until 45 "lb1 did not take the VIPs back after its restart" only_master lb1 lb2
sleep 1
only_master lb1 lb2 || fail "after lb1's return expected lb1 alone to hold the VIPs, got: $(masters)"
vrrp_status lb1 | sed 's/^/   /'
client spread -n 30 -min-servers 2 http://203.0.113.10:8000/ | sed "s/^/   /" || fail "the service does not answer after the drills"

# ---------------------------------------------------------------------------------------------
step "6. teardown: agents stopped (priority 0, VIPs removed), apps stopped, namespaces deleted"
trap - EXIT
teardown
left=$(ip netns list | grep -c '^fl-demo-' || true)
[ "$left" = 0 ] || fail "$left namespaces left behind"
[ ! -e "$work" ] || fail "$work left behind"
if pgrep -f "fulcrum-demo\." >/dev/null; then fail "processes left behind: $(pgrep -af 'fulcrum-demo\.')"; fi
say "nothing left behind"

step "demo complete"
cat <<'TXT'
   Fulcrum ran an active/passive pair from examples/pair/lb1.hcl and lb2.hcl: VRRP election,
   kernel IPVS, the HTTPS proxy with sticky sessions, rate limiting and a stats page, health
   checks moving weights, and failover drills with the client-visible outage measured.
   Next: docs/operations.md (deploying a pair with systemd), docs/config.md (every attribute).
TXT
