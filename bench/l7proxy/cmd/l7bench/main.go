// Command l7bench is the child process of the l7proxy benchmark (bench/l7proxy): it runs either
// Fulcrum's l7proxy with the benchmark's configuration, or the minimal HTTP/1.1 backend every
// proxy of the benchmark forwards to. The benchmark pins it to a core with taskset.
//
//	l7bench proxy   -listen 127.0.0.1:P -tls-listen 127.0.0.1:Q -cert C -key K -backend 127.0.0.1:B [-cpuprofile F] [-memprofile F]
//	l7bench backend -listen 127.0.0.1:B [-body N]
//
// Both run until SIGTERM or SIGINT; the proxy writes its profiles then.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"

	"github.com/fulcrum-lb/fulcrum/l7proxy"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: l7bench proxy|backend [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "proxy":
		err = runProxy(os.Args[2:])
	case "backend":
		err = runBackend(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "l7bench:", err)
		os.Exit(1)
	}
}

func runProxy(args []string) error {
	fs := flag.NewFlagSet("proxy", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18080", "plain HTTP listener")
	tlsListen := fs.String("tls-listen", "", "TLS listener (needs -cert, -key)")
	cert := fs.String("cert", "", "certificate PEM")
	key := fs.String("key", "", "key PEM")
	backendAddr := fs.String("backend", "127.0.0.1:18090", "server address")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile here at exit")
	memprofile := fs.String("memprofile", "", "write an allocation profile here at exit")
	fs.Parse(args)

	srv, err := netip.ParseAddrPort(*backendAddr)
	if err != nil {
		return err
	}
	ln, err := netip.ParseAddrPort(*listen)
	if err != nil {
		return err
	}
	po := l7proxy.ProxyOptions{
		Name:      "bench",
		Listeners: []l7proxy.ListenerOptions{{Name: "http", Address: ln}},
		Backends: []l7proxy.BackendOptions{{Name: "app", MaxFails: 1,
			Servers: []l7proxy.ServerOptions{{Name: "s1", Address: srv, Weight: 1}}}},
		Timeouts: l7proxy.DefaultTimeouts(),
	}
	if *tlsListen != "" {
		tl, err := netip.ParseAddrPort(*tlsListen)
		if err != nil {
			return err
		}
		po.Listeners = append(po.Listeners, l7proxy.ListenerOptions{Name: "https", Address: tl,
			TLS: &l7proxy.TLSOptions{Certificates: []l7proxy.CertificateOptions{{Name: "bench", CertFile: *cert, KeyFile: *key}}}})
	}
	p, err := l7proxy.New(l7proxy.Options{Proxies: []l7proxy.ProxyOptions{po},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return err
	}
	if *memprofile != "" {
		runtime.MemProfileRate = 4096
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := p.Start(ctx); err != nil {
		return err
	}
	fmt.Println("ready")
	<-ctx.Done()
	p.Close()
	if *memprofile != "" {
		f, err := os.Create(*memprofile)
		if err != nil {
			return err
		}
		pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
	return nil
}

// runBackend serves a fixed small response to every request, as cheaply as possible: requests
// are GETs without a body (the benchmark's), parsed only as far as the end of the headers and a
// "Connection: close".
func runBackend(args []string) error {
	fs := flag.NewFlagSet("backend", flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:18090", "address")
	bodyLen := fs.Int("body", 64, "response body bytes")
	fs.Parse(args)
	body := bytes.Repeat([]byte("x"), *bodyLen)
	body[len(body)-1] = '\n'
	head := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n"
	keep := append([]byte(head+"\r\n"), body...)
	closing := append([]byte(head+"Connection: close\r\n\r\n"), body...)

	l, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	go func() { <-ctx.Done(); l.Close() }()
	fmt.Println("ready")
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			continue
		}
		go serveConn(c, keep, closing)
	}
}

var (
	crlf2     = []byte("\r\n\r\n")
	connClose = []byte("\nconnection: close\r")
)

func serveConn(c net.Conn, keep, closing []byte) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 8192)
	buf := make([]byte, 0, 8192)
	out := make([]byte, 0, 4096)
	tmp := make([]byte, 8192)
	for {
		n, err := r.Read(tmp)
		if n > 0 {
			buf = append(buf, tmp[:n]...)
		}
		out = out[:0]
		closeAfter := false
		for {
			i := bytes.Index(buf, crlf2)
			if i < 0 {
				break
			}
			hdr := buf[:i+2]
			if bytes.Contains(bytes.ToLower(hdr), connClose) {
				out = append(out, closing...)
				closeAfter = true
				buf = buf[:0]
				break
			}
			out = append(out, keep...)
			buf = buf[:copy(buf, buf[i+4:])]
		}
		if len(out) > 0 {
			if _, werr := c.Write(out); werr != nil {
				return
			}
		}
		if closeAfter || err != nil {
			return
		}
	}
}
