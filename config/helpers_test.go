package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
)

// testSystem is the real file system with a fixed environment, so that
// tests do not depend on (or change) the process environment.
func testSystem(env map[string]string) system {
	return system{
		lookupEnv: func(name string) (string, bool) {
			v, ok := env[name]
			return v, ok
		},
		readFile: readRegularFile,
	}
}

// parseIn writes nothing: it parses src as the file dir/node.hcl.
func parseIn(dir, src string, opts Options, env map[string]string) (*Config, *Diagnostics) {
	return parse([]byte(src), filepath.Join(dir, "node.hcl"), opts, testSystem(env))
}

func all() Options { return Options{Supported: AllFeatures()} }

// writeKeyPair writes a self-signed ECDSA certificate and its key as PEM
// files under dir.
func writeKeyPair(t *testing.T, dir, certFile, keyFile string, notAfter time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "www.example.com"},
		DNSNames:     []string{"www.example.com"},
		NotBefore:    time.Now().Add(-2 * time.Hour),
		NotAfter:     notAfter,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	writeFile(t, dir, keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})))
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// at formats a diagnostic's subject start as line:col.
func at(d *hcl.Diagnostic) string {
	if d.Subject == nil {
		return "-"
	}
	return fmt.Sprintf("%d:%d", d.Subject.Start.Line, d.Subject.Start.Column)
}

// dump renders diagnostics for failure messages.
func dump(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		fmt.Fprintf(&b, "\n  %s %s: %s | %s", severityName(d.Severity), at(d), d.Summary, d.Detail)
	}
	return b.String()
}
