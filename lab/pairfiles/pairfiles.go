// Package pairfiles writes the files that examples/pair/lb1.hcl and lb2.hcl name beside
// themselves: a self-signed certificate for www.example.com with its key, the key that signs
// sticky cookies and the stats page's password, all random and for tests and `make demo` only.
package pairfiles

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// Write creates dir/tls/www.example.com.{pem,key}, dir/secrets/sticky.key and
// dir/secrets/stats.pass, and returns the stats password.
func Write(dir string) (statsPassword string, err error) {
	for _, d := range []string{"tls", "secrets"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return "", fmt.Errorf("pairfiles: %w", err)
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", fmt.Errorf("pairfiles: %w", err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return "", fmt.Errorf("pairfiles: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "www.example.com"},
		DNSNames:     []string{"www.example.com"},
		IPAddresses:  []net.IP{net.ParseIP("203.0.113.10")}, // the pair's service VIP
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", fmt.Errorf("pairfiles: %w", err)
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", fmt.Errorf("pairfiles: %w", err)
	}
	secret := func(n int) string {
		b := make([]byte, n)
		_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux (Go 1.24+)
		return hex.EncodeToString(b)
	}
	pass := secret(8)
	files := map[string][]byte{
		"tls/www.example.com.pem": pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		"tls/www.example.com.key": pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}),
		"secrets/sticky.key":      []byte(secret(32) + "\n"),
		"secrets/stats.pass":      []byte(pass + "\n"),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return "", fmt.Errorf("pairfiles: %w", err)
		}
	}
	return pass, nil
}
