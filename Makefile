# Fulcrum — build, test, demo.
#
#   make demo   the main job: build fulcrum and run it on this machine (as root)
#   make test   install what the tests need, then vet, unit, race and namespace tests (as root)
#   make bench  benchmarks side by side with the reference tools
#
# Everything a fresh Debian 12 machine lacks is installed here (apt-get), so CI and a newcomer
# need nothing but this file and Go.

SHELL     := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO        ?= go
BIN       := bin/fulcrum
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Debian packages the tests use: iproute2 (namespaces, witnesses), systemd (journald and
# journalctl), qemu + busybox-static + kmod + xz-utils (the kernel lab for IPVS), ipvsadm (an
# independent reading of kernel IPVS state inside the lab guest), keepalived (the reference VRRP
# peer in namespaces), chromium (the stats page in a real browser).
DEB_PACKAGES := iproute2 systemd qemu-system-x86 busybox-static kmod xz-utils ipvsadm keepalived chromium

# Debian packages make demo uses: iproute2 and util-linux (namespaces, unshare), the kernel lab
# (qemu-system-x86, busybox-static, kmod, xz-utils) where the host kernel has no IPVS, and
# ipvsadm (the kernel's own view of IPVS, shown beside fulcrum status).
DEMO_PACKAGES := iproute2 util-linux qemu-system-x86 busybox-static kmod xz-utils ipvsadm

# Reference tools the benchmarks run side by side (make bench only).
BENCH_PACKAGES := haproxy nginx wrk

# Test timeout per package; generous, only to catch hangs.
TEST_TIMEOUT ?= 20m

.PHONY: all build test deps bench-deps install-packages check unit demo bench clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/fulcrum

# deps installs missing Debian packages (apt-get update once, then apt-get install -y).
deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES='$(DEB_PACKAGES)'

bench-deps:
	@$(MAKE) --no-print-directory install-packages PACKAGES='$(DEB_PACKAGES) $(BENCH_PACKAGES)'

install-packages:
	@missing=$$(for p in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    if [ "$$(id -u)" != 0 ]; then echo "make deps: need root to install $$missing" >&2; exit 1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# check: formatting and vet.
check:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

# test: the whole suite, as CI runs it. Namespace, journald and kernel-lab tests need root; under
# CI=true a missing prerequisite fails instead of skipping.
test: deps check build
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

# unit: the fast tests only (no root needed; prerequisites skip visibly).
unit:
	$(GO) test -short ./...

# demo: the pair of examples/pair in network namespaces (examples/demo.sh), in the kernel lab
# guest when this kernel has no IPVS. demokit plays the app servers and the client; labrun boots
# the guest.
demo: build
	@$(MAKE) --no-print-directory install-packages PACKAGES='$(DEMO_PACKAGES)'
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/demokit ./lab/demokit
	CGO_ENABLED=0 $(GO) build -trimpath -o bin/labrun ./lab/kernel/internal/labrun
	bash examples/demo.sh $(BIN) bin/demokit bin/labrun

# bench: side-by-side benchmarks against the reference tools, as root; each prints its report and
# keeps it under bin/. See each package's doc for the method.
#   bench/vrrp     client-visible failover outage of a fulcrum pair and a keepalived pair in
#                  namespaces, master crash and drill, 20 runs each (FULCRUM_BENCH_RUNS), ~2 min;
#                  then 200 crash/restart drill cycles of a fulcrum pair (outage median/p95/max).
#   bench/ipvs     in the lab guest: 10,000 services x 4 destinations applied by the reconciler vs
#                  ipvsadm -R, then one weight change (netlink ops and time).
#   bench/l7proxy  fulcrum's proxy vs HAProxy and nginx pinned to one core, wrk on the other:
#                  req/s, p50/p99 and CPU per request, 4 scenarios, interleaved rounds, ~4 min.
#   bench/health   10,000 TCP checks at 1 s: the agent's CPU, RSS and drift on the host, and beside
#                  keepalived's checker in the lab guest (10,000 and 200 checks), ~7 min.
bench: bench-deps build
	FULCRUM_BENCH=1 FULCRUM_BIN=$(CURDIR)/$(BIN) FULCRUM_BENCH_OUT=$(CURDIR)/bin/bench-vrrp.txt \
	    $(GO) test -count=1 -v -timeout 20m -run '^TestVRRPFailover$$' ./bench/vrrp
	FULCRUM_BENCH=1 FULCRUM_BIN=$(CURDIR)/$(BIN) FULCRUM_DRILL_OUT=$(CURDIR)/bin/bench-vrrp-drills.txt $(GO) test -count=1 -v -timeout 20m -run '^TestVRRPDrillCycles$$' ./bench/vrrp
	FULCRUM_BENCH=1 $(GO) test -count=1 -v -timeout 30m -run '^TestIPVSApply$$' ./bench/ipvs
	FULCRUM_BENCH=1 FULCRUM_BENCH_OUT=$(CURDIR)/bin/bench-l7proxy.txt $(GO) test -count=1 -v -timeout 20m -run '^TestL7Proxy$$' ./bench/l7proxy
	FULCRUM_BENCH=1 FULCRUM_BENCH_OUT=$(CURDIR)/bin/bench-health.txt $(GO) test -count=1 -v -timeout 20m -run '^TestHealthChecks$$' ./bench/health

clean:
	rm -rf bin
