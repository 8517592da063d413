package l7proxy

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestApplyDropsNothing reloads a proxy many times under continuous load, over fresh
// connections and over keep-alive connections, and requires every request to be answered:
// a reload never shuts down the server of a kept socket, so no connection it accepted is closed
// unanswered. The requests are POSTs, which net/http's client does not retry on a reused
// connection, so a dropped keep-alive request shows as an error too.
func TestApplyDropsNothing(t *testing.T) {
	const reloads = 20
	a, b := newBackend(t, "a"), newBackend(t, "b")
	keep := deadAddr(t)
	optsA := simpleOptions(a.server(1))
	optsA.Proxies[0].Listeners[0].Address = keep
	optsB := simpleOptions(a.server(1), b.server(1))
	optsB.Proxies[0].Listeners[0].Address = keep
	p := startProxy(t, optsA)
	url := "http://" + addrOf(t, p, "p", "http") + "/"

	fresh := client("")
	keepAlive := &http.Client{
		Transport: &http.Transport{MaxIdleConnsPerHost: 8, IdleConnTimeout: time.Minute},
		Timeout:   10 * time.Second,
	}
	t.Cleanup(keepAlive.CloseIdleConnections)

	var (
		stop           atomic.Bool
		ok, eofs, errs atomic.Int64
		mu             sync.Mutex
		firstErrs      []string
		wg             sync.WaitGroup
	)
	worker := func(c *http.Client) {
		for !stop.Load() {
			resp, err := c.Post(url, "text/plain", strings.NewReader("ping"))
			if err == nil {
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = errors.New(resp.Status)
				}
			}
			if err == nil {
				ok.Add(1)
				continue
			}
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "EOF") {
				eofs.Add(1)
			} else {
				errs.Add(1)
			}
			mu.Lock()
			if len(firstErrs) < 5 {
				firstErrs = append(firstErrs, err.Error())
			}
			mu.Unlock()
		}
	}
	for range 3 {
		wg.Go(func() { worker(fresh) })
		wg.Go(func() { worker(keepAlive) })
	}
	for i := range reloads {
		time.Sleep(30 * time.Millisecond)
		o := optsA
		if i%2 == 0 {
			o = optsB
		}
		if err := p.Apply(o); err != nil {
			t.Fatalf("Apply %d: %v", i, err)
		}
	}
	time.Sleep(30 * time.Millisecond)
	stop.Store(true)
	wg.Wait()
	t.Logf("%d reloads: %d answered, %d EOF, %d other errors", reloads, ok.Load(), eofs.Load(), errs.Load())
	if eofs.Load() != 0 || errs.Load() != 0 {
		t.Errorf("requests dropped across reloads: %d EOF, %d other errors; first: %q", eofs.Load(), errs.Load(), firstErrs)
	}
	if ok.Load() == 0 {
		t.Error("no request answered")
	}
	// The kept socket is still the same and serves the last configuration.
	if conn, err := net.DialTimeout("tcp", keep.String(), time.Second); err != nil {
		t.Errorf("kept socket: %v", err)
	} else {
		conn.Close()
	}
}

// TestApplyKeptSocketChanges changes a kept address from plain HTTP to TLS (with HTTP/2) and
// back, and its server settings: the socket's long-lived server takes each change for new
// connections.
func TestApplyKeptSocketChanges(t *testing.T) {
	a := newBackend(t, "a")
	keep := deadAddr(t)
	plain := simpleOptions(a.server(1))
	plain.Proxies[0].Listeners[0].Address = keep
	p := startProxy(t, plain)
	addr := addrOf(t, p, "p", "http")
	if _, e := get(t, client(""), "http://"+addr+"/"); e.Server != "a" {
		t.Fatalf("plain: %q", e.Server)
	}

	cf, kf, _ := writeCert(t, t.TempDir(), "c", "www.example.test")
	withTLS := simpleOptions(a.server(1))
	withTLS.Proxies[0].Listeners = []ListenerOptions{{Name: "http", Address: keep,
		TLS: &TLSOptions{Certificates: []CertificateOptions{{Name: "c", CertFile: cf, KeyFile: kf}}}}}
	if err := p.Apply(withTLS); err != nil {
		t.Fatal(err)
	}
	resp, e := get(t, tlsClient("www.example.test"), "https://"+addr+"/")
	if e.Server != "a" || resp.ProtoMajor != 2 {
		t.Fatalf("TLS: server %q proto %s", e.Server, resp.Proto)
	}

	changed := plain
	changed.Proxies = append([]ProxyOptions(nil), plain.Proxies...)
	changed.Proxies[0].MaxHeaderSize = 4096
	if err := p.Apply(changed); err != nil {
		t.Fatal(err)
	}
	if _, e := get(t, client(""), "http://"+addr+"/"); e.Server != "a" {
		t.Fatalf("plain again: %q", e.Server)
	}
	if resp, _ := get(t, client(""), "http://"+addr+"/", "X-Big", strings.Repeat("x", 8192)); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("header over the new limit: %s", resp.Status)
	}
}
