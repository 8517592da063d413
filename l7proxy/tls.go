package l7proxy

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

// certStore is one loaded set of certificates of a TLS listener, indexed for SNI.
type certStore struct {
	exact    map[string]*tls.Certificate // lower-case DNS name
	wildcard map[string]*tls.Certificate // "example.com" for "*.example.com"
	def      *tls.Certificate
	stamps   []fileStamp
}

// fileStamp identifies a file's version for the change check.
type fileStamp struct {
	path string
	mod  time.Time
	size int64
}

func stampOf(path string) fileStamp {
	st := fileStamp{path: path}
	if fi, err := os.Stat(path); err == nil {
		st.mod, st.size = fi.ModTime(), fi.Size()
	}
	return st
}

// loadCertStore loads every certificate; the first is the default, and for a name in several
// certificates the earlier one wins.
func loadCertStore(certs []CertificateOptions) (*certStore, error) {
	s := &certStore{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for _, co := range certs {
		s.stamps = append(s.stamps, stampOf(co.CertFile), stampOf(co.KeyFile))
		c, err := tls.LoadX509KeyPair(co.CertFile, co.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("certificate %q: %w", co.Name, err)
		}
		if co.OCSPFile != "" {
			s.stamps = append(s.stamps, stampOf(co.OCSPFile))
			staple, err := os.ReadFile(co.OCSPFile)
			if err != nil {
				return nil, fmt.Errorf("certificate %q: OCSP staple: %w", co.Name, err)
			}
			if len(staple) == 0 {
				return nil, fmt.Errorf("certificate %q: OCSP staple %s is empty", co.Name, co.OCSPFile)
			}
			c.OCSPStaple = staple
		}
		leaf := c.Leaf
		if leaf == nil {
			if leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
				return nil, fmt.Errorf("certificate %q: %w", co.Name, err)
			}
			c.Leaf = leaf
		}
		names := leaf.DNSNames
		if len(names) == 0 && leaf.Subject.CommonName != "" {
			names = []string{leaf.Subject.CommonName}
		}
		for _, n := range names {
			n = strings.ToLower(strings.TrimSuffix(n, "."))
			if rest, ok := strings.CutPrefix(n, "*."); ok {
				if _, dup := s.wildcard[rest]; !dup {
					s.wildcard[rest] = &c
				}
			} else if _, dup := s.exact[n]; !dup {
				s.exact[n] = &c
			}
		}
		if s.def == nil {
			s.def = &c
		}
	}
	if s.def == nil {
		return nil, errors.New("no certificate")
	}
	return s, nil
}

// lookup picks the certificate for an SNI name: exact, then a wildcard covering exactly the
// first label, then the default.
func (s *certStore) lookup(sni string) *tls.Certificate {
	name := strings.ToLower(strings.TrimSuffix(sni, "."))
	if name != "" {
		if c := s.exact[name]; c != nil {
			return c
		}
		if _, parent, ok := strings.Cut(name, "."); ok {
			if c := s.wildcard[parent]; c != nil {
				return c
			}
		}
	}
	return s.def
}

func (s *certStore) changed() bool {
	for _, st := range s.stamps {
		if stampOf(st.path) != st {
			return true
		}
	}
	return false
}

// listenerTLS holds a TLS listener's certificates, swapped atomically on reload.
type listenerTLS struct {
	opts TLSOptions
	cur  atomic.Pointer[certStore]
	cfg  *tls.Config
}

func newListenerTLS(o TLSOptions) (*listenerTLS, error) {
	s, err := loadCertStore(o.Certificates)
	if err != nil {
		return nil, err
	}
	t := &listenerTLS{opts: o}
	t.cur.Store(s)
	minV := o.MinVersion
	if minV < tls.VersionTLS12 {
		minV = tls.VersionTLS12
	}
	t.cfg = &tls.Config{
		MinVersion: minV,
		// TLS 1.2: Go's defaults restricted to ECDHE with AEAD ciphers (TLS 1.3 suites are
		// fixed and all AEAD).
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return t.cur.Load().lookup(hello.ServerName), nil
		},
	}
	return t, nil
}

// reload loads the files again; on error the running certificates stay.
func (t *listenerTLS) reload() error {
	s, err := loadCertStore(t.opts.Certificates)
	if err != nil {
		return err
	}
	t.cur.Store(s)
	return nil
}
