package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/mitchellh/go-wordwrap"
)

// Diagnostics are the errors and warnings found while loading a file,
// together with the parsed source so that they can be shown with snippets.
// A nil *Diagnostics has no diagnostics.
type Diagnostics struct {
	diags hcl.Diagnostics
	// files maps file names to their parsed source, with the values of
	// sensitive attributes masked so that snippets never show secrets.
	files map[string]*hcl.File
}

// HasErrors reports whether any diagnostic is an error.
func (d *Diagnostics) HasErrors() bool {
	return d != nil && d.diags.HasErrors()
}

// All returns every diagnostic, errors and warnings, in file order.
func (d *Diagnostics) All() hcl.Diagnostics {
	if d == nil {
		return nil
	}
	return append(hcl.Diagnostics(nil), d.diags...)
}

// Errors returns the error diagnostics in file order.
func (d *Diagnostics) Errors() hcl.Diagnostics { return d.filter(hcl.DiagError) }

// Warnings returns the warning diagnostics in file order.
func (d *Diagnostics) Warnings() hcl.Diagnostics { return d.filter(hcl.DiagWarning) }

func (d *Diagnostics) filter(sev hcl.DiagnosticSeverity) hcl.Diagnostics {
	if d == nil {
		return nil
	}
	var out hcl.Diagnostics
	for _, diag := range d.diags {
		if diag.Severity == sev {
			out = append(out, diag)
		}
	}
	return out
}

// WriteText writes every diagnostic for a person to read, in the layout of
// hcl's diagnostic text writer plus a column and a caret line:
//
//	Error: virtual_router_id out of range
//
//	  on node.hcl:4:23, in vrrp_instance "a":
//	    4 |   virtual_router_id = 256
//	      |                       ^^^
//
//	virtual_router_id must be between 1 and 255 (RFC 5798 §5.2.3), not 256.
//
// width wraps the detail (0: no wrapping); color adds ANSI colours and
// underlines the subject as hcl's writer does.
func (d *Diagnostics) WriteText(w io.Writer, width uint, color bool) error {
	if d == nil {
		return nil
	}
	for _, diag := range d.diags {
		var b strings.Builder
		writeTextDiagnostic(&b, diag, d.files, width, color)
		if _, err := io.WriteString(w, b.String()); err != nil {
			return fmt.Errorf("writing diagnostics: %w", err)
		}
	}
	return nil
}

func writeTextDiagnostic(b *strings.Builder, diag *hcl.Diagnostic, files map[string]*hcl.File, width uint, color bool) {
	var sevColor, bold, reset string
	if color {
		sevColor, bold, reset = "\x1b[31m", "\x1b[1;4m", "\x1b[0m"
		if diag.Severity == hcl.DiagWarning {
			sevColor = "\x1b[33m"
		}
	}
	sev := "Error"
	if diag.Severity == hcl.DiagWarning {
		sev = "Warning"
	}
	fmt.Fprintf(b, "%s%s%s: %s\n", sevColor, sev, reset, diag.Summary)

	if s := diag.Subject; s != nil {
		f := files[s.Filename]
		where := ""
		if f != nil {
			if nav, ok := f.Nav.(interface{ ContextString(int) string }); ok {
				if c := nav.ContextString(s.Start.Byte); c != "" {
					where = ", in " + c
				}
			}
		}
		fmt.Fprintf(b, "\n  on %s%s:\n", pos(*s), where)
		if f != nil {
			writeSnippet(b, f.Bytes, *s, bold, reset)
		}
	}
	if diag.Detail != "" {
		detail := diag.Detail
		if width > 0 {
			detail = wordwrap.WrapString(detail, width)
		}
		fmt.Fprintf(b, "\n%s\n", detail)
	}
	b.WriteString("\n")
}

// writeSnippet writes the source line where r starts, with r underlined
// (when colouring) and a caret line below it.
func writeSnippet(b *strings.Builder, src []byte, r hcl.Range, bold, reset string) {
	start := r.Start.Byte
	if start < 0 || start > len(src) {
		return
	}
	lineStart := bytes.LastIndexByte(src[:start], '\n') + 1
	lineEnd := len(src)
	if i := bytes.IndexByte(src[start:], '\n'); i >= 0 {
		lineEnd = start + i
	}
	end := min(max(r.End.Byte, start), lineEnd)
	before, hl, after := src[lineStart:start], src[start:end], src[end:lineEnd]
	after = bytes.TrimRight(after, "\r")
	fmt.Fprintf(b, "%5d | %s%s%s%s%s\n", r.Start.Line, before, bold, hl, reset, after)

	// Keep tabs so that the caret lines up under tab-indented source.
	pad := make([]byte, 0, len(before))
	for _, c := range string(before) {
		if c == '\t' {
			pad = append(pad, '\t')
		} else {
			pad = append(pad, ' ')
		}
	}
	n := max(1, utf8.RuneCount(hl))
	fmt.Fprintf(b, "      | %s%s\n", pad, strings.Repeat("^", n))
}

// JSONDiagnostic is one diagnostic in the JSON form used by `fulcrum
// validate -json` and by the control API's reload answer. Every key is
// always present. Positions are 1-based; they are 0 and File is "" when the
// diagnostic has no position (an unreadable file).
type JSONDiagnostic struct {
	Severity  string `json:"severity"` // "error" or "warning"
	Summary   string `json:"summary"`
	Detail    string `json:"detail"`
	File      string `json:"file"`
	Line      int    `json:"line"`
	Column    int    `json:"column"`
	EndLine   int    `json:"end_line"`
	EndColumn int    `json:"end_column"`
	// Snippet is the source line(s) of the subject (at most five), with
	// secrets masked; "" without a position.
	Snippet string `json:"snippet"`
}

// JSON returns the diagnostics as values ready for encoding/json; never nil.
func (d *Diagnostics) JSON() []JSONDiagnostic {
	out := []JSONDiagnostic{}
	if d == nil {
		return out
	}
	for _, diag := range d.diags {
		jd := JSONDiagnostic{
			Severity: severityName(diag.Severity),
			Summary:  diag.Summary,
			Detail:   diag.Detail,
		}
		if s := diag.Subject; s != nil {
			jd.File = s.Filename
			jd.Line, jd.Column = s.Start.Line, s.Start.Column
			jd.EndLine, jd.EndColumn = s.End.Line, s.End.Column
			jd.Snippet = d.snippet(*s)
		}
		out = append(out, jd)
	}
	return out
}

// WriteJSON writes the diagnostics as a JSON array of JSONDiagnostic,
// followed by a newline. No diagnostics writes [].
func (d *Diagnostics) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d.JSON()); err != nil {
		return fmt.Errorf("writing diagnostics: %w", err)
	}
	return nil
}

// Append adds diagnostics found by the caller's own checks of a decoded
// Config (the agent refusing what its build does not implement yet, say),
// keeping file order; they print with source snippets like the decoder's.
// An appended error makes HasErrors true: the caller must then drop the
// Config, as Load would have.
func (d *Diagnostics) Append(more ...*hcl.Diagnostic) {
	d.diags = sortDiagnostics(append(d.diags, more...))
}

// Summary returns the first error on one line, "file:line:col: summary", for
// logs and status output; "" when there is no error. An error without a
// position (an unreadable file) gives "summary: detail".
func (d *Diagnostics) Summary() string {
	errs := d.Errors()
	if len(errs) == 0 {
		return ""
	}
	return oneLine(errs[0])
}

// Err returns nil when there are no errors, otherwise an error whose message
// is Summary, followed by the number of further errors if any.
func (d *Diagnostics) Err() error {
	errs := d.Errors()
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errors.New(d.Summary())
	default:
		return fmt.Errorf("%s (and %d more errors)", d.Summary(), len(errs)-1)
	}
}

func oneLine(diag *hcl.Diagnostic) string {
	if s := diag.Subject; s != nil {
		return fmt.Sprintf("%s: %s", pos(*s), diag.Summary)
	}
	if diag.Detail != "" {
		return fmt.Sprintf("%s: %s", diag.Summary, strings.TrimSuffix(diag.Detail, "."))
	}
	return diag.Summary
}

// pos formats the start of r as file:line:col.
func pos(r hcl.Range) string {
	return fmt.Sprintf("%s:%d:%d", r.Filename, r.Start.Line, r.Start.Column)
}

func severityName(s hcl.DiagnosticSeverity) string {
	switch s {
	case hcl.DiagError:
		return "error"
	case hcl.DiagWarning:
		return "warning"
	default:
		return "invalid"
	}
}

// snippet returns the source lines covering r (at most five).
func (d *Diagnostics) snippet(r hcl.Range) string {
	f := d.files[r.Filename]
	if f == nil || f.Bytes == nil {
		return ""
	}
	lines := bytes.Split(f.Bytes, []byte("\n"))
	first, last := r.Start.Line, r.End.Line
	if last < first {
		last = first
	}
	if last > first+4 {
		last = first + 4
	}
	if first < 1 || first > len(lines) {
		return ""
	}
	if last > len(lines) {
		last = len(lines)
	}
	var out []string
	for _, l := range lines[first-1 : last] {
		out = append(out, strings.TrimRight(string(l), "\r"))
	}
	return strings.Join(out, "\n")
}

// sortDiagnostics orders diagnostics by file position (those without a
// position first), keeping the order of equal positions stable. hcl reports
// unknown attributes in map order; sorting makes the output deterministic.
func sortDiagnostics(diags hcl.Diagnostics) hcl.Diagnostics {
	sort.SliceStable(diags, func(i, j int) bool {
		a, b := diags[i].Subject, diags[j].Subject
		switch {
		case a == nil || b == nil:
			return a == nil && b != nil
		case a.Filename != b.Filename:
			return a.Filename < b.Filename
		case a.Start.Byte != b.Start.Byte:
			return a.Start.Byte < b.Start.Byte
		case diags[i].Summary != diags[j].Summary:
			return diags[i].Summary < diags[j].Summary
		default:
			return diags[i].Detail < diags[j].Detail
		}
	})
	return diags
}

// maskedFiles returns copies of files in which the value of every sensitive
// attribute (see isSensitiveAttribute) is overwritten with '*', byte for byte
// so that every range stays valid. Function calls such as env("X") are left
// alone: they name where the secret is, not the secret.
func maskedFiles(files map[string]*hcl.File) map[string]*hcl.File {
	out := make(map[string]*hcl.File, len(files))
	for name, f := range files {
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok || f.Bytes == nil {
			out[name] = f
			continue
		}
		src := append([]byte(nil), f.Bytes...)
		maskBody(body, src)
		out[name] = &hcl.File{Body: f.Body, Bytes: src, Nav: f.Nav}
	}
	return out
}

func maskBody(body *hclsyntax.Body, src []byte) {
	for name, attr := range body.Attributes {
		if !isSensitiveAttribute(name) {
			continue
		}
		if _, isCall := attr.Expr.(*hclsyntax.FunctionCallExpr); isCall {
			continue
		}
		r := attr.Expr.Range()
		for i := r.Start.Byte; i < r.End.Byte && i < len(src); i++ {
			if src[i] != '\n' && src[i] != '\r' {
				src[i] = '*'
			}
		}
	}
	for _, b := range body.Blocks {
		if b.Body != nil {
			maskBody(b.Body, src)
		}
	}
}
