// Package ipvse2e tests the built fulcrum binary's IPVS side end to end. Real IPVS needs the
// kernel lab: TestIPVSLab boots one guest (Debian's kernel, which has IPVS) and runs every
// TestInGuest* test there, where a client, a director running `fulcrum agent` and two backends
// live in network namespaces and real TCP connections go through the director's IPVS. On the
// host, whose kernel has no IPVS, TestHostWithoutIPVS checks that the agent says so and keeps
// serving (VRRP included).
//
// The fulcrum binary is built statically (CGO_ENABLED=0) once, in TestMain on the host, and
// handed to the guest through the kit's Files with the guest's test binary.
package ipvse2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/fulcrumbin"
	"github.com/fulcrum-lb/fulcrum/lab/kernel"
)

// envBinary names the fulcrum binary in the guest.
const envBinary = "FULCRUM_E2E_BIN"

// binary is the fulcrum binary: built by TestMain on the host, passed in by envBinary in
// the guest.
var binary string

func TestMain(m *testing.M) {
	if kernel.InGuest() {
		binary = os.Getenv(envBinary)
		os.Exit(m.Run())
	}
	os.Exit(fulcrumbin.Main(m, &binary))
}

// guestTimeout bounds the guest run: boot, namespaces, agents and a few hundred connections
// under software emulation.
const guestTimeout = 8 * time.Minute

// TestIPVSLab runs every TestInGuest* test of this package in one lab guest. It builds the
// package's test binary (static) and passes it and the fulcrum binary in through the kit's
// Files; the guest's /tmp is its own, so host temp paths are not visible there.
func TestIPVSLab(t *testing.T) {
	if kernel.InGuest() {
		t.Skip("host side of the guest run")
	}
	k := kernel.Require(t)
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	testBin := filepath.Join(t.TempDir(), "guest.test")
	build := exec.CommandContext(t.Context(), "go", "test", "-c", "-vet=off", "-o", testBin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the guest test binary: %v\n%s", err, out)
	}
	timeout := guestTimeout
	if dl, ok := t.Deadline(); ok {
		timeout = min(timeout, max(time.Until(dl)-30*time.Second, time.Minute))
	}
	env := []string{envBinary + "=" + kernel.GuestFilesDir + "/fulcrum"}
	if ci, ok := os.LookupEnv("CI"); ok {
		env = append(env, "CI="+ci)
	}
	res, err := k.Run(t.Context(), kernel.RunOptions{
		Command: []string{kernel.GuestFilesDir + "/guest.test", "-test.v", "-test.run", "^TestInGuest",
			"-test.timeout", (timeout - timeout/5).String()},
		Env:     env,
		Dir:     dir,
		Timeout: timeout,
		Files:   map[string]string{"guest.test": testBin, "fulcrum": binary},
		Stream:  t.Output(),
	})
	t.Logf("kernel lab: guest booted in %v, ran in %v (exit status %d)", res.Boot.Round(time.Millisecond), res.Elapsed.Round(time.Millisecond), res.ExitCode)
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("the guest tests failed (exit status %d); output above\n--- guest console (tail) ---\n%s", res.ExitCode, tail(res.Console, 3000))
	}
	if bytes.Contains(res.Output, []byte("testing: warning: no tests to run")) {
		t.Fatal("no guest test ran")
	}
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// hangGuard bounds each wait; generous, since the guest is emulated.
const hangGuard = 60 * time.Second

// agentProc is one `fulcrum agent` process and its files.
type agentProc struct {
	dir, config, socket string
}

// cli runs a fulcrum client command against the agent's socket.
func (a *agentProc) cli(t *testing.T, args ...string) (string, int) {
	t.Helper()
	return fulcrumbin.CLI(t, binary, a.socket, hangGuard, args...)
}

// ipvsStatus is the part of `fulcrum status -json` these tests read.
type ipvsStatus struct {
	Configured int    `json:"configured"`
	State      string `json:"state"`
	Detail     struct {
		Services []struct {
			Name         string `json:"name"`
			InSync       bool   `json:"in_sync"`
			Destinations []struct {
				Name            string `json:"name"`
				EffectiveWeight int    `json:"effective_weight"`
				Drained         bool   `json:"drained"`
				KernelWeight    int    `json:"kernel_weight"`
			} `json:"destinations"`
		} `json:"services"`
		Counters struct {
			Ops       map[string]uint64 `json:"ops"`
			Mutations uint64            `json:"mutations"`
		} `json:"counters"`
	} `json:"detail"`
}

type agentStatus struct {
	PID        int `json:"pid"`
	Subsystems []struct {
		Name       string          `json:"name"`
		Configured int             `json:"configured"`
		State      string          `json:"state"`
		Detail     json.RawMessage `json:"detail"`
	} `json:"subsystems"`
}

func (a *agentProc) status(t *testing.T) (agentStatus, ipvsStatus) {
	t.Helper()
	out, code := a.cli(t, "status", "-json")
	if code != 0 {
		t.Fatalf("fulcrum status -json exited %d: %s", code, out)
	}
	var st agentStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status is not JSON: %v\n%s", err, out)
	}
	var is ipvsStatus
	for _, s := range st.Subsystems {
		if s.Name == "ipvs" {
			raw, _ := json.Marshal(s)
			if err := json.Unmarshal(raw, &is); err != nil {
				t.Fatalf("ipvs status: %v\n%s", err, raw)
			}
		}
	}
	return st, is
}

// waitIPVS polls the ipvs status until ok holds.
func (a *agentProc) waitIPVS(t *testing.T, what string, ok func(ipvsStatus) bool) ipvsStatus {
	t.Helper()
	deadline := time.Now().Add(hangGuard)
	for {
		_, is := a.status(t)
		if ok(is) {
			return is
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; ipvs status %+v", what, is)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// echoServer accepts connections on ln: it greets each with "NAME\n", then answers every line
// with "NAME LINE\n" until the client closes.
func echoServer(t *testing.T, name string, ln net.Listener) {
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		var conns sync.WaitGroup
		defer conns.Wait()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(guestTimeout))
				if _, err := fmt.Fprintf(c, "%s\n", name); err != nil {
					return
				}
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintf(c, "%s %s\n", name, sc.Text()); err != nil {
						return
					}
				}
			})
		}
	})
}

// conn is a client connection through the virtual server, with the backend that took it.
type conn struct {
	net.Conn
	rd      *bufio.Reader
	backend string
}

// ask sends a line and returns the answer line.
func (c *conn) ask(line string) (string, error) {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "%s\n", line); err != nil {
		return "", err
	}
	s, err := c.rd.ReadString('\n')
	return strings.TrimSuffix(s, "\n"), err
}

// normalizeIPVSADM turns `ipvsadm -Ln` into its service and destination lines, with runs of
// spaces collapsed and the connection counters left out:
// "TCP 203.0.113.10:80 wrr", "-> 198.51.100.11:8080 Masq 3".
func normalizeIPVSADM(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) >= 3 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP" || f[0] == "FWM"):
			lines = append(lines, strings.Join(f, " "))
		case len(f) >= 4 && f[0] == "->" && f[1] != "RemoteAddress:Port":
			lines = append(lines, strings.Join(f[:4], " "))
		}
	}
	return lines
}
