package l7bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"
)

const (
	proxyCore = "0"
	loadCore  = "1"
	clkTck    = 100 // USER_HZ on Linux
)

type scenario struct {
	name, title string
	tls, close  bool
}

var allScenarios = []scenario{
	{"ka", "keep-alive, small body", false, false},
	{"close", "new connection per request", false, true},
	{"tls-ka", "TLS keep-alive", true, false},
	{"tls-close", "TLS new connection per request", true, true},
}

// proc is one proxy under test, running for the whole benchmark.
type proc struct {
	name      string
	cmd       *exec.Cmd
	plain, tl string // listen addresses
}

type result struct {
	rps, p50, p99 float64 // p50/p99 in ms
	cpuPerReq     float64 // µs
	reqs          int64
	errors        string
}

func env(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestL7Proxy(t *testing.T) {
	if os.Getenv("FULCRUM_BENCH") != "1" {
		t.Skip("benchmark: set FULCRUM_BENCH=1 to run it (make bench)")
	}
	for _, tool := range []string{"haproxy", "nginx", "wrk", "taskset"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (make deps installs haproxy, nginx, wrk): %v", tool, err)
		}
	}
	rounds, _ := strconv.Atoi(env("FULCRUM_BENCH_ROUNDS", "3"))
	dur, err := time.ParseDuration(env("FULCRUM_BENCH_DURATION", "5s"))
	if err != nil {
		t.Fatal(err)
	}
	conns := env("FULCRUM_BENCH_CONNS", "50")
	// Fulcrum's listeners always use TCP_DEFER_ACCEPT; HAProxy and nginx run without it unless
	// asked (their defer-accept and deferred), so that their figures are those of a config as
	// shipped, or of the same kernel work.
	deferAccept := os.Getenv("FULCRUM_BENCH_DEFER") == "1"
	names := strings.Split(env("FULCRUM_BENCH_PROXIES", "fulcrum,haproxy,nginx"), ",")
	var scens []scenario
	want := strings.Split(env("FULCRUM_BENCH_SCENARIOS", "ka,close,tls-ka,tls-close"), ",")
	for _, s := range allScenarios {
		if slices.Contains(want, s.name) {
			scens = append(scens, s)
		}
	}
	out := env("FULCRUM_BENCH_OUT", "")
	if out == "" {
		root, err := filepath.Abs("../..")
		if err != nil {
			t.Fatal(err)
		}
		out = filepath.Join(root, "bin", "bench-l7proxy.txt")
	}

	dir := t.TempDir()
	os.Chmod(dir, 0o755) // nginx workers run as nobody
	bin := filepath.Join(dir, "l7bench")
	build := exec.Command("go", "build", "-o", bin, "./cmd/l7bench")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build l7bench: %v", err)
	}
	certFile, keyFile, pemFile := writeCert(t, dir)

	backend := freePort(t)
	start(t, "backend", []string{"taskset", "-c", loadCore, bin, "backend", "-listen", backend}, backend)

	var procs []*proc
	for _, n := range names {
		p := &proc{name: n, plain: freePort(t), tl: freePort(t)}
		var argv []string
		switch n {
		case "fulcrum":
			argv = []string{"taskset", "-c", proxyCore, bin, "proxy", "-listen", p.plain, "-tls-listen", p.tl,
				"-cert", certFile, "-key", keyFile, "-backend", backend}
			if pd := os.Getenv("FULCRUM_BENCH_PROFILE"); pd != "" {
				argv = append(argv, "-cpuprofile", filepath.Join(pd, "cpu.pprof"), "-memprofile", filepath.Join(pd, "allocs.pprof"))
			}
		case "haproxy":
			cfg := filepath.Join(dir, "haproxy.cfg")
			hcfg := fmt.Sprintf(haproxyCfg, p.plain, p.tl, pemFile, backend)
			if deferAccept {
				hcfg = strings.ReplaceAll(hcfg, "    bind "+p.plain+"\n", "    bind "+p.plain+" defer-accept\n")
				hcfg = strings.ReplaceAll(hcfg, " ssl crt ", " defer-accept ssl crt ")
			}
			writeFile(t, cfg, hcfg)
			argv = []string{"taskset", "-c", proxyCore, "haproxy", "-f", cfg, "-db"}
		case "nginx":
			ndir := filepath.Join(dir, "nginx")
			os.MkdirAll(filepath.Join(ndir, "logs"), 0o755)
			cfg := filepath.Join(ndir, "nginx.conf")
			ncfg := fmt.Sprintf(nginxCfg, ndir, backend, p.plain, p.tl, certFile, keyFile)
			if deferAccept {
				ncfg = strings.ReplaceAll(ncfg, "listen "+p.plain+";", "listen "+p.plain+" deferred;")
				ncfg = strings.ReplaceAll(ncfg, " ssl;", " ssl deferred;")
			}
			writeFile(t, cfg, ncfg)
			argv = []string{"taskset", "-c", proxyCore, "nginx", "-p", ndir, "-c", cfg, "-g", "daemon off;"}
		default:
			t.Fatalf("unknown proxy %q", n)
		}
		p.cmd = start(t, n, argv, p.plain, p.tl)
		procs = append(procs, p)
	}

	load := loadavg()
	t.Logf("load average before the runs: %s", load)
	// Warm up every proxy and scenario once (connections to the backend, TLS, the Go heap).
	for _, s := range scens {
		for _, p := range procs {
			runWrk(t, p, s, conns, time.Second)
		}
	}
	res := map[string]map[string][]result{} // scenario -> proxy -> rounds
	for r := range rounds {
		for _, s := range scens {
			if res[s.name] == nil {
				res[s.name] = map[string][]result{}
			}
			for i := range procs {
				p := procs[(i+r)%len(procs)]
				x := runWrk(t, p, s, conns, dur)
				t.Logf("round %d %-9s %-8s %9.0f req/s p50 %6.2fms p99 %6.2fms cpu %6.1fµs/req%s",
					r+1, s.name, p.name, x.rps, x.p50, x.p99, x.cpuPerReq, x.errors)
				res[s.name][p.name] = append(res[s.name][p.name], x)
			}
		}
	}
	loadAfter := loadavg()

	var b bytes.Buffer
	fmt.Fprintf(&b, "l7proxy benchmark, %s\n", time.Now().Format(time.RFC3339))
	fmt.Fprintf(&b, "proxies pinned to core %s; wrk (1 thread, %s connections, %v per run) and the backend to core %s; %d interleaved rounds, medians\n",
		proxyCore, conns, dur, loadCore, rounds)
	fmt.Fprintf(&b, "versions: %s; %s; %s\n", version("haproxy", "-v"), version("nginx", "-v"), version("wrk", "-v"))
	if deferAccept {
		fmt.Fprintln(&b, "TCP_DEFER_ACCEPT on every proxy (HAProxy defer-accept, nginx deferred; Fulcrum always)")
	} else {
		fmt.Fprintln(&b, "TCP_DEFER_ACCEPT: Fulcrum only (its default); HAProxy and nginx as shipped, without")
	}
	fmt.Fprintf(&b, "load average before: %s; after: %s\n\n", load, loadAfter)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tproxy\treq/s\tp50 ms\tp99 ms\tCPU µs/req\t"+
		"req/s ÷HAP\tCPU ÷HAP\tp99 ÷HAP\treq/s ÷nginx\tCPU ÷nginx\tp99 ÷nginx\terrors\t")
	for _, s := range scens {
		med := map[string]result{}
		for _, p := range procs {
			med[p.name] = median(res[s.name][p.name])
		}
		for _, p := range procs {
			m := med[p.name]
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.2f\t%.2f\t%.1f\t", s.name, p.name, m.rps, m.p50, m.p99, m.cpuPerReq)
			for _, ref := range []string{"haproxy", "nginx"} {
				if r, ok := med[ref]; ok && r.rps > 0 {
					fmt.Fprintf(tw, "%.2f\t%.2f\t%.2f\t", m.rps/r.rps, m.cpuPerReq/r.cpuPerReq, m.p99/r.p99)
				} else {
					fmt.Fprint(tw, "-\t-\t-\t")
				}
			}
			fmt.Fprintf(tw, "%s\t\n", strings.TrimSpace(m.errors))
		}
	}
	tw.Flush()
	fmt.Fprintln(&b, "\nscenarios: ka = keep-alive small body; close = new connection per request (Connection: close);")
	fmt.Fprintln(&b, "tls-ka, tls-close = the same over TLS. ÷HAP, ÷nginx: the row's figure divided by HAProxy's / nginx's.")
	fmt.Print("\n" + b.String())
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err == nil {
		if err := os.WriteFile(out, b.Bytes(), 0o644); err != nil {
			t.Errorf("write report: %v", err)
		} else {
			t.Logf("report saved in %s", out)
		}
	}
}

// median takes the median of each figure separately.
func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v) == 0 {
			return 0
		}
		return v[len(v)/2]
	}
	m := result{
		rps:       pick(func(r result) float64 { return r.rps }),
		p50:       pick(func(r result) float64 { return r.p50 }),
		p99:       pick(func(r result) float64 { return r.p99 }),
		cpuPerReq: pick(func(r result) float64 { return r.cpuPerReq }),
	}
	for _, r := range rs {
		if r.errors != "" {
			m.errors += r.errors
		}
	}
	return m
}

var (
	reqsRe    = regexp.MustCompile(`(\d+) requests in`)
	rpsRe     = regexp.MustCompile(`Requests/sec:\s+([\d.]+)`)
	pctRe     = regexp.MustCompile(`(?m)^\s+(50|99)%\s+([\d.]+)(us|ms|s)\s*$`)
	non2xxRe  = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
	socketsRe = regexp.MustCompile(`Socket errors: (.*)`)
)

// runWrk runs one load against p and measures p's CPU time over it.
func runWrk(t *testing.T, p *proc, s scenario, conns string, d time.Duration) result {
	t.Helper()
	url := "http://" + p.plain + "/"
	if s.tls {
		url = "https://" + p.tl + "/"
	}
	args := []string{"-c", loadCore, "wrk", "-t1", "-c" + conns, "-d" + strconv.Itoa(int(d.Seconds())) + "s", "--latency", "--timeout", "5s"}
	if s.close {
		args = append(args, "-H", "Connection: close")
	}
	args = append(args, url)
	ctx, cancel := context.WithTimeout(context.Background(), d+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "taskset", args...)
	before := treeTicks(p.cmd.Process.Pid)
	outb, err := cmd.CombinedOutput()
	after := treeTicks(p.cmd.Process.Pid)
	if err != nil {
		t.Fatalf("wrk against %s: %v\n%s", p.name, err, outb)
	}
	o := string(outb)
	var r result
	if m := reqsRe.FindStringSubmatch(o); m != nil {
		r.reqs, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := rpsRe.FindStringSubmatch(o); m != nil {
		r.rps, _ = strconv.ParseFloat(m[1], 64)
	}
	for _, m := range pctRe.FindAllStringSubmatch(o, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		switch m[3] {
		case "us":
			v /= 1000
		case "s":
			v *= 1000
		}
		if m[1] == "50" {
			r.p50 = v
		} else {
			r.p99 = v
		}
	}
	if m := non2xxRe.FindStringSubmatch(o); m != nil {
		r.errors += " non2xx=" + m[1]
	}
	if m := socketsRe.FindStringSubmatch(o); m != nil {
		r.errors += " sockets(" + m[1] + ")"
	}
	if r.reqs == 0 {
		t.Fatalf("wrk against %s: no requests\n%s", p.name, o)
	}
	r.cpuPerReq = float64(after-before) / clkTck * 1e6 / float64(r.reqs)
	time.Sleep(300 * time.Millisecond)
	return r
}

// treeTicks is utime+stime (all threads) of pid and its descendants, in clock ticks.
func treeTicks(pid int) int64 {
	children := map[int][]int{}
	var own = map[int]int64{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+2:])) // from field 3 (state)
		if len(f) < 13 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		children[ppid] = append(children[ppid], n)
		own[n] = ut + st
	}
	var sum int64
	var walk func(int)
	walk = func(p int) {
		sum += own[p]
		for _, c := range children[p] {
			walk(c)
		}
	}
	walk(pid)
	return sum
}

// start runs argv until the test ends and waits until it accepts on every address.
func start(t *testing.T, name string, argv []string, addrs ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for _, a := range addrs {
		for {
			c, err := net.DialTimeout("tcp", a, time.Second)
			if err == nil {
				c.Close()
				break
			}
			select {
			case <-exited:
				t.Fatalf("%s exited: %s", name, stderr.String())
			default:
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s does not accept on %s: %v\n%s", name, a, err, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return cmd
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeCert writes a self-signed ECDSA P-256 certificate for localhost and 127.0.0.1: the
// certificate, the key, and both in one file (HAProxy's crt).
func writeCert(t *testing.T, dir string) (certFile, keyFile, pemFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	c := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	k := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kd})
	certFile, keyFile, pemFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "both.pem")
	writeFile(t, certFile, string(c))
	writeFile(t, keyFile, string(k))
	writeFile(t, pemFile, string(c)+string(k))
	return
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func version(tool, flag string) string {
	out, _ := exec.Command(tool, flag).CombinedOutput()
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	line = strings.TrimPrefix(line, "nginx version: ")
	if sc := bufio.NewScanner(strings.NewReader(line)); sc.Scan() {
		return sc.Text()
	}
	return tool
}

// haproxyCfg: listen plain, listen TLS, crt, backend. Same work as the others: forwarding
// headers, keep-alive to the backend (http-reuse), no logs.
const haproxyCfg = `global
    nbthread 1
    maxconn 8000
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
    timeout http-request 10s
    timeout http-keep-alive 60s
    option forwardfor
    http-reuse always
frontend fe
    bind %s
    bind %s ssl crt %s alpn h2,http/1.1
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    http-request set-header X-Forwarded-Host %%[req.hdr(host)]
    http-request set-header X-Real-IP %%[src]
    default_backend be
backend be
    server s1 %s
`

// nginxCfg: prefix, backend, listen plain, listen TLS, cert, key.
const nginxCfg = `worker_processes 1;
pid %[1]s/nginx.pid;
error_log stderr crit;
events { worker_connections 8000; }
http {
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    upstream be {
        server %[2]s;
        keepalive 64;
        keepalive_requests 1000000;
    }
    server {
        listen %[3]s;
        listen %[4]s ssl;
        ssl_certificate %[5]s;
        ssl_certificate_key %[6]s;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header X-Real-IP $remote_addr;
        }
    }
}
`
