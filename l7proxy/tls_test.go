package l7proxy

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"testing"
	"time"
)

func tlsOptions(t *testing.T, certs []CertificateOptions, b *testBackend) Options {
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].Listeners[0].TLS = &TLSOptions{Certificates: certs}
	return opts
}

func TestTLSSNISelection(t *testing.T) {
	dir := t.TempDir()
	dc, dk, dDER := writeCert(t, dir, "default", "default.test")
	ec, ek, eDER := writeCert(t, dir, "exact", "api.example.test")
	wc, wk, wDER := writeCert(t, dir, "wild", "*.example.test")
	b := newBackend(t, "a")
	p := startProxy(t, tlsOptions(t, []CertificateOptions{
		{Name: "default", CertFile: dc, KeyFile: dk},
		{Name: "wild", CertFile: wc, KeyFile: wk},
		{Name: "exact", CertFile: ec, KeyFile: ek},
	}, b))
	addr := addrOf(t, p, "p", "http")
	for _, tc := range []struct {
		sni  string
		want []byte
	}{
		{"api.example.test", eDER},  // exact beats the earlier wildcard
		{"API.Example.Test.", eDER}, // case and trailing dot
		{"www.example.test", wDER},  // wildcard
		{"a.b.example.test", dDER},  // a wildcard covers one label only
		{"other.test", dDER},        // default
		{"", dDER},                  // no SNI
	} {
		got, st := peerCert(t, addr, tc.sni)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("SNI %q: wrong certificate", tc.sni)
		}
		if st.Version < tls.VersionTLS12 {
			t.Errorf("negotiated version %#x", st.Version)
		}
	}
	// TLS 1.1 is refused.
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11})
	if err == nil {
		c.Close()
		t.Error("TLS 1.1 handshake succeeded")
	}
	// TLS 1.2 gets an ECDHE AEAD suite.
	c, err = tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}})
	if err != nil {
		t.Fatal(err)
	}
	if s := c.ConnectionState().CipherSuite; s != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
		t.Errorf("TLS 1.2 suite %s", tls.CipherSuiteName(s))
	}
	c.Close()
}

func TestTLSHTTP2AndForwardedProto(t *testing.T) {
	dir := t.TempDir()
	cf, kf, _ := writeCert(t, dir, "c", "www.example.test")
	b := newBackend(t, "a")
	p := startProxy(t, tlsOptions(t, []CertificateOptions{{Name: "c", CertFile: cf, KeyFile: kf}}, b))
	resp, e := get(t, tlsClient("www.example.test"), "https://"+addrOf(t, p, "p", "http")+"/h2")
	if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
		t.Errorf("proto %s, ALPN %q; want HTTP/2 over h2", resp.Proto, resp.TLS.NegotiatedProtocol)
	}
	if e.Header.Get("X-Forwarded-Proto") != "https" || e.Server != "a" {
		t.Errorf("backend saw proto %q", e.Header.Get("X-Forwarded-Proto"))
	}
}

func TestH2C(t *testing.T) {
	b := newBackend(t, "a")
	opts := simpleOptions(b.server(1))
	opts.Proxies[0].Listeners[0].H2C = true
	p := startProxy(t, opts)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	c := &http.Client{Transport: &http.Transport{Protocols: &protos}, Timeout: 5 * time.Second}
	resp, e := get(t, c, "http://"+addrOf(t, p, "p", "http")+"/")
	if resp.ProtoMajor != 2 || e.Server != "a" {
		t.Errorf("h2c: proto %s, server %q", resp.Proto, e.Server)
	}
}

func TestOCSPStaple(t *testing.T) {
	dir := t.TempDir()
	cf, kf, _ := writeCert(t, dir, "c", "www.example.test")
	staple := []byte("\x30\x03\x0a\x01\x00 fake OCSP response")
	of := dir + "/c.ocsp"
	os.WriteFile(of, staple, 0o600)
	b := newBackend(t, "a")
	p := startProxy(t, tlsOptions(t, []CertificateOptions{{Name: "c", CertFile: cf, KeyFile: kf, OCSPFile: of}}, b))
	_, st := peerCert(t, addrOf(t, p, "p", "http"), "www.example.test")
	if !bytes.Equal(st.OCSPResponse, staple) {
		t.Errorf("OCSP staple %q", st.OCSPResponse)
	}
}

func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	cf, kf, oldDER := writeCert(t, dir, "c", "www.example.test")
	b := newBackend(t, "a")
	opts := tlsOptions(t, []CertificateOptions{{Name: "c", CertFile: cf, KeyFile: kf}}, b)
	opts.CertCheckInterval = 0
	p := startProxy(t, opts)
	addr := addrOf(t, p, "p", "http")

	// An established keep-alive connection from before the reload.
	old, err := tls.Dial("tcp", addr, &tls.Config{ServerName: "www.example.test", InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	roundTrip := func(c net.Conn) string {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: www.example.test\r\n\r\n")
		buf := make([]byte, 4096)
		n, _ := c.Read(buf)
		return string(buf[:n])
	}
	if r := roundTrip(old); !bytes.HasPrefix([]byte(r), []byte("HTTP/1.1 200")) {
		t.Fatalf("before reload: %q", r)
	}

	_, _, newDER := writeCert(t, dir, "c", "www.example.test") // overwrites the files
	// A broken file is refused and the running certificate stays.
	os.WriteFile(kf+".bad", []byte("junk"), 0o600)
	if err := p.ReloadCertificates(); err != nil {
		t.Fatalf("ReloadCertificates: %v", err)
	}
	if got, _ := peerCert(t, addr, "www.example.test"); !bytes.Equal(got, newDER) || bytes.Equal(got, oldDER) {
		t.Error("a new connection after the reload did not get the new certificate")
	}
	if r := roundTrip(old); !bytes.HasPrefix([]byte(r), []byte("HTTP/1.1 200")) {
		t.Errorf("the connection from before the reload broke: %q", r)
	}
	if !bytes.Equal(old.ConnectionState().PeerCertificates[0].Raw, oldDER) {
		t.Error("old connection's certificate changed")
	}

	os.WriteFile(cf, []byte("not PEM"), 0o600)
	if err := p.ReloadCertificates(); err == nil {
		t.Error("reload of a broken certificate succeeded")
	}
	if got, _ := peerCert(t, addr, "www.example.test"); !bytes.Equal(got, newDER) {
		t.Error("a failed reload replaced the certificate")
	}
}

func TestCertificatePolling(t *testing.T) {
	dir := t.TempDir()
	cf, kf, _ := writeCert(t, dir, "c", "www.example.test")
	b := newBackend(t, "a")
	opts := tlsOptions(t, []CertificateOptions{{Name: "c", CertFile: cf, KeyFile: kf}}, b)
	opts.CertCheckInterval = 20 * time.Millisecond
	p := startProxy(t, opts)
	addr := addrOf(t, p, "p", "http")
	time.Sleep(10 * time.Millisecond) // a different mtime
	_, _, newDER := writeCert(t, dir, "c", "www.example.test")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, _ := peerCert(t, addr, "www.example.test"); bytes.Equal(got, newDER) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the changed files were not picked up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
