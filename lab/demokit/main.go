// Command demokit plays the application servers and the client of `make demo` (examples/demo.sh):
//
//	demokit files DIR                                    throwaway files examples/pair/*.hcl read
//	demokit app -name app1 -listen ADDR[,ADDR...]       an HTTP server answering "<name>\n"
//	demokit get [-user U -pass P] URL                    one request: status, server, headers
//	demokit spread [-n 30] URL                           which servers answer N new connections
//	demokit sticky [-n 10] URL                           a cookie session: one server throughout
//	demokit burst [-n 60] URL                            N requests at once: how many got 429
//	demokit load [-every 20ms] [-ready FILE] URL         requests until SIGINT, then the outage
//
// Client commands trust any certificate (the demo's is self-signed), open a new connection per
// request unless the command needs one session, and exit non-zero when the behaviour the demo
// shows did not happen. They are test tools for namespaces the demo made, not part of the product.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fulcrum-lb/fulcrum/lab/pairfiles"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	args := os.Args[2:]
	switch os.Args[1] {
	case "files":
		err = files(args)
	case "app":
		err = app(args)
	case "get":
		err = get(args)
	case "spread":
		err = spread(args)
	case "sticky":
		err = sticky(args)
	case "burst":
		err = burst(args)
	case "load":
		err = load(args)
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demokit:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: demokit files|app|get|spread|sticky|burst|load ... (see the source's doc comment)")
	os.Exit(2)
}

// files writes, below DIR, the files examples/pair/lb1.hcl and lb2.hcl name (see pairfiles) and
// prints the stats password.
func files(args []string) error {
	if len(args) != 1 {
		return errors.New("files: one folder")
	}
	pass, err := pairfiles.Write(args[0])
	if err != nil {
		return err
	}
	fmt.Println(pass)
	return nil
}

// app serves "<name>\n" on every address until SIGTERM or SIGINT; /healthz answers "ok".
func app(args []string) error {
	fs := flag.NewFlagSet("app", flag.ExitOnError)
	name := fs.String("name", "app", "the name this server answers with")
	listen := fs.String("listen", "", "comma-separated listen addresses")
	_ = fs.Parse(args)
	if *listen == "" {
		return errors.New("app: -listen is required")
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Served-By", *name)
		fmt.Fprintf(w, "%s\n", *name)
	})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	errc := make(chan error, 8)
	var servers []*http.Server
	for _, a := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("app %s: %w", *name, err)
		}
		s := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		servers = append(servers, s)
		go func() { errc <- s.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	for _, s := range servers {
		_ = s.Close()
	}
	return nil
}

// client returns an HTTP client that trusts the demo's self-signed certificate; keepAlive false
// makes every request a new connection (so IPVS schedules each one).
func client(timeout time.Duration, keepAlive bool) *http.Client {
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}, // the demo's self-signed certificate
			DisableKeepAlives: !keepAlive,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetch does one GET and returns the status code and the trimmed body.
func fetch(c *http.Client, url string) (int, string, *http.Response, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return resp.StatusCode, "", resp, err
	}
	return resp.StatusCode, strings.TrimSpace(string(b)), resp, nil
}

func get(args []string) error {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	user := fs.String("user", "", "basic auth user")
	pass := fs.String("pass", "", "basic auth password")
	expect := fs.Int("expect", 0, "fail unless the status is this")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("get: one URL")
	}
	req, err := http.NewRequest(http.MethodGet, fs.Arg(0), nil)
	if err != nil {
		return err
	}
	if *user != "" {
		req.SetBasicAuth(*user, *pass)
	}
	resp, err := client(5*time.Second, false).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	line := fmt.Sprintf("%s %s", resp.Proto, resp.Status)
	if resp.TLS != nil {
		line += fmt.Sprintf(", %s, certificate CN=%s", tls.VersionName(resp.TLS.Version), resp.TLS.PeerCertificates[0].Subject.CommonName)
	}
	fmt.Println(line)
	for _, h := range []string{"Location", "Set-Cookie", "Cache-Control", "Retry-After", "Content-Type", "Www-Authenticate"} {
		if v := resp.Header.Get(h); v != "" {
			fmt.Printf("  %s: %s\n", h, v)
		}
	}
	body := strings.TrimSpace(string(b))
	if len(body) > 200 {
		body = fmt.Sprintf("(%d bytes)", len(b))
	}
	if body != "" {
		fmt.Printf("  body: %s\n", body)
	}
	if *expect != 0 && resp.StatusCode != *expect {
		return fmt.Errorf("get %s: status %d, want %d", fs.Arg(0), resp.StatusCode, *expect)
	}
	return nil
}

// spread sends n requests, each on a new connection, and prints how many each server answered.
func spread(args []string) error {
	fs := flag.NewFlagSet("spread", flag.ExitOnError)
	n := fs.Int("n", 30, "requests")
	min := fs.Int("min-servers", 2, "fail unless at least this many servers answered")
	avoid := fs.String("avoid", "", "fail if this server answers")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("spread: one URL")
	}
	c := client(3*time.Second, false)
	counts := map[string]int{}
	failed := 0
	for range *n {
		code, body, _, err := fetch(c, fs.Arg(0))
		if err != nil || code != http.StatusOK {
			failed++
			continue
		}
		counts[body]++
	}
	fmt.Printf("%d requests, each on a new connection: %s", *n, tally(counts))
	if failed > 0 {
		fmt.Printf(", %d failed", failed)
	}
	fmt.Println()
	switch {
	case failed > 0:
		return fmt.Errorf("spread: %d of %d requests failed", failed, *n)
	case len(counts) < *min:
		return fmt.Errorf("spread: %d servers answered, want at least %d", len(counts), *min)
	case *avoid != "" && counts[*avoid] > 0:
		return fmt.Errorf("spread: %s answered %d requests although it should be out", *avoid, counts[*avoid])
	}
	return nil
}

func tally(counts map[string]int) string {
	names := make([]string, 0, len(counts))
	for k := range counts {
		names = append(names, k)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, k := range names {
		parts = append(parts, fmt.Sprintf("%s x%d", k, counts[k]))
	}
	if len(parts) == 0 {
		return "none answered"
	}
	return strings.Join(parts, ", ")
}

// sticky runs one browser-like session with a cookie jar, a new connection per request.
func sticky(args []string) error {
	fs := flag.NewFlagSet("sticky", flag.ExitOnError)
	n := fs.Int("n", 10, "requests")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("sticky: one URL")
	}
	jar, _ := cookiejar.New(nil)
	c := client(3*time.Second, false)
	c.Jar = jar
	counts := map[string]int{}
	for i := range *n {
		code, body, resp, err := fetch(c, fs.Arg(0))
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("sticky: status %d", code)
		}
		if i == 0 {
			fmt.Printf("first response: %s, Set-Cookie: %s\n", body, resp.Header.Get("Set-Cookie"))
		}
		counts[body]++
	}
	fmt.Printf("%d requests with the cookie, each on a new connection: %s\n", *n, tally(counts))
	if len(counts) != 1 {
		return errors.New("sticky: the session moved between servers")
	}
	return nil
}

// burst sends n requests on one keep-alive connection as fast as it can and counts statuses.
func burst(args []string) error {
	fs := flag.NewFlagSet("burst", flag.ExitOnError)
	n := fs.Int("n", 60, "requests")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("burst: one URL")
	}
	c := client(3*time.Second, true)
	counts := map[int]int{}
	retry := ""
	for range *n {
		code, _, resp, err := fetch(c, fs.Arg(0))
		if err != nil {
			return err
		}
		counts[code]++
		if code == http.StatusTooManyRequests && retry == "" {
			retry = resp.Header.Get("Retry-After")
		}
	}
	fmt.Printf("%d requests from one client: %d x 200, %d x 429 (Retry-After: %s s)\n", *n, counts[200], counts[429], retry)
	if counts[429] == 0 {
		return errors.New("burst: no request was rate limited")
	}
	return nil
}

// load requests the URL every interval, each on a new connection with a short timeout, until
// SIGINT or SIGTERM, then prints the requests, the failures and the outage: the longest span
// between the send times of two successful requests with only failed ones sent in between
// (send times, not completion times: a request that times out finishes long after later ones
// have succeeded).
func load(args []string) error {
	fs := flag.NewFlagSet("load", flag.ExitOnError)
	every := fs.Duration("every", 20*time.Millisecond, "request interval")
	timeout := fs.Duration("timeout", 500*time.Millisecond, "per-request timeout")
	ready := fs.String("ready", "", "file created after the first successful request")
	limit := fs.Duration("max", 5*time.Minute, "stop by itself after this long")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("load: one URL")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *limit)
	defer cancel()
	c := client(*timeout, false)

	type result struct {
		sent time.Time
		ok   bool
	}
	var (
		mu      sync.Mutex
		results []result
		counts  = map[string]int{}
		wg      sync.WaitGroup
	)
	tick := time.NewTicker(*every)
	defer tick.Stop()
	start := time.Now()
	for ctx.Err() == nil {
		wg.Add(1)
		go func(at time.Time) {
			defer wg.Done()
			code, body, _, err := fetch(c, fs.Arg(0))
			ok := err == nil && code == http.StatusOK
			mu.Lock()
			defer mu.Unlock()
			if ok {
				if counts[body] == 0 && len(counts) == 0 && *ready != "" {
					_ = os.WriteFile(*ready, nil, 0o644)
				}
				counts[body]++
			}
			results = append(results, result{sent: at, ok: ok})
		}(time.Now())
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
	}
	wg.Wait()
	sort.Slice(results, func(i, j int) bool { return results[i].sent.Before(results[j].sent) })
	failed := 0
	var worst time.Duration
	var from, to time.Time
	lastOK := -1
	for i, r := range results {
		if !r.ok {
			failed++
			continue
		}
		if lastOK >= 0 && i-lastOK > 1 {
			if gap := r.sent.Sub(results[lastOK].sent); gap > worst {
				worst, from, to = gap, results[lastOK].sent, r.sent
			}
		}
		lastOK = i
	}
	fmt.Printf("client: %d requests in %s (one every %s, new connection each), %d failed; answered by %s\n",
		len(results), time.Since(start).Round(time.Millisecond), *every, failed, tally(counts))
	if n := len(results); n > 0 && !results[n-1].ok {
		return errors.New("load: the last request failed: the service did not come back")
	}
	if worst > 0 {
		fmt.Printf("client-visible outage: %s (requests sent between %s and %s failed)\n",
			worst.Round(time.Millisecond), from.Format("15:04:05.000"), to.Format("15:04:05.000"))
	} else {
		fmt.Println("client-visible outage: none (no request failed)")
	}
	return nil
}
