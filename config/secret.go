package config

import (
	"fmt"
	"io"
	"log/slog"
)

// Redacted is what a Secret prints as, whatever the verb or encoder.
const Redacted = "<redacted>"

// Secret is a sensitive string such as a password. Formatting it with any
// fmt verb, encoding it as JSON or text, or logging it with slog yields
// "<redacted>"; only Reveal returns the value. The zero Secret is empty.
//
// It is a struct holding a pointer rather than a string type on purpose:
// when fmt meets a verb that does not fit a value (say "%s" of a Config,
// which holds bools and pointers), it prints that value by reflection
// without calling any method, and a string type would show its text there.
// Through a pointer, fmt shows an address. Compare Secrets with Reveal.
type Secret struct {
	value *string
}

// NewSecret returns a Secret holding s.
func NewSecret(s string) Secret {
	if s == "" {
		return Secret{}
	}
	return Secret{value: &s}
}

// Reveal returns the secret's value. Call it only where the value is used.
func (s Secret) Reveal() string {
	if s.value == nil {
		return ""
	}
	return *s.value
}

// IsSet reports whether the secret is not empty.
func (s Secret) IsSet() bool { return s.value != nil && *s.value != "" }

// String implements fmt.Stringer.
func (Secret) String() string { return Redacted }

// GoString implements fmt.GoStringer (the %#v verb).
func (Secret) GoString() string { return Redacted }

// Format implements fmt.Formatter so that no verb (%s, %q, %x, %d, ...)
// prints the value.
func (Secret) Format(f fmt.State, _ rune) { _, _ = io.WriteString(f, Redacted) }

// MarshalJSON implements json.Marshaler.
func (Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + Redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (Secret) MarshalText() ([]byte, error) { return []byte(Redacted), nil }

// LogValue implements slog.LogValuer.
func (Secret) LogValue() slog.Value { return slog.StringValue(Redacted) }

// sensitiveAttributes are attribute names whose values are masked in the
// source snippets of diagnostics, wherever they appear in the file.
func isSensitiveAttribute(name string) bool {
	return name == "password" || name == "sticky_key"
}
