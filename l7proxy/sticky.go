package l7proxy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strings"
)

// Sticky cookies (HAProxy `cookie NAME insert indirect nocache`): the proxy sets NAME to a value
// naming the server, removes the cookie from the request before it reaches the server, and
// marks responses carrying it private. The value is base64url(server name) "." base64url(tag),
// tag being the first 16 bytes of HMAC-SHA256(key, proxy "/" backend "/" server), so a client
// cannot pick a server by writing a cookie, nor reuse one backend's cookie on another.

const (
	stickyTagLen      = 16
	maxStickyValueLen = 200 // a 64-byte name and the tag are well below
)

type cookieSigner struct{ key []byte }

func (s cookieSigner) tag(scope, server string) []byte {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(scope))
	m.Write([]byte{'/'})
	m.Write([]byte(server))
	return m.Sum(nil)[:stickyTagLen]
}

// encode returns the cookie value for server within scope (proxy "/" backend).
func (s cookieSigner) encode(scope, server string) string {
	enc := base64.RawURLEncoding
	return enc.EncodeToString([]byte(server)) + "." + enc.EncodeToString(s.tag(scope, server))
}

// decode returns the server a cookie value names, if its tag is valid for scope.
func (s cookieSigner) decode(scope, value string) (string, bool) {
	if len(value) > maxStickyValueLen {
		return "", false
	}
	name64, tag64, ok := strings.Cut(value, ".")
	if !ok {
		return "", false
	}
	enc := base64.RawURLEncoding.Strict()
	name, err1 := enc.DecodeString(name64)
	tag, err2 := enc.DecodeString(tag64)
	if err1 != nil || err2 != nil || len(name) == 0 || len(tag) != stickyTagLen {
		return "", false
	}
	if !hmac.Equal(tag, s.tag(scope, string(name))) {
		return "", false
	}
	return string(name), true
}

// stickyServer returns the server named by a valid sticky cookie in r, or "".
func stickyServer(r *http.Request, name string, s cookieSigner, scope string) string {
	for _, c := range r.CookiesNamed(name) {
		if srv, ok := s.decode(scope, c.Value); ok {
			return srv
		}
	}
	return ""
}

// stripCookie removes cookie name from the Cookie headers of h (HAProxy's `indirect`),
// leaving every other cookie as the client sent it.
func stripCookie(h http.Header, name string) {
	lines := h.Values("Cookie")
	if len(lines) == 0 {
		return
	}
	var out []string
	for _, line := range lines {
		var kept []string
		for part := range strings.SplitSeq(line, ";") {
			p := strings.TrimSpace(part)
			if p == "" {
				continue
			}
			k, _, _ := strings.Cut(p, "=")
			if strings.TrimSpace(k) == name {
				continue
			}
			kept = append(kept, p)
		}
		if len(kept) > 0 {
			out = append(out, strings.Join(kept, "; "))
		}
	}
	h.Del("Cookie")
	if len(out) > 0 {
		// One line, as HTTP/1.1 requires for Cookie (RFC 6265 §5.4).
		h.Set("Cookie", strings.Join(out, "; "))
	}
}

// setStickyCookie adds the Set-Cookie and marks the response private (HAProxy's `nocache`),
// dropping a `public` directive that would let a shared cache serve the cookie to others.
func setStickyCookie(h http.Header, name, value string, secure bool) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: secure, SameSite: http.SameSiteLaxMode}
	h.Add("Set-Cookie", c.String())
	var dirs []string
	private := false
	for _, line := range h.Values("Cache-Control") {
		for d := range strings.SplitSeq(line, ",") {
			d = strings.TrimSpace(d)
			switch lower := strings.ToLower(d); {
			case d == "", lower == "public":
				continue
			case lower == "private" || strings.HasPrefix(lower, "private="):
				private = true
			}
			dirs = append(dirs, d)
		}
	}
	if !private {
		dirs = append([]string{"private"}, dirs...)
	}
	h.Set("Cache-Control", strings.Join(dirs, ", "))
}
