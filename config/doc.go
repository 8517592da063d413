// Package config reads the HCL file that describes a whole Fulcrum node and
// turns it into a validated Config of plain Go values.
//
//	cfg, diags := config.Load("/etc/fulcrum/node.hcl", config.Options{Supported: set})
//	if diags.HasErrors() {
//		diags.WriteText(os.Stderr, 0, false) // file:line:col, source line, caret
//		return
//	}
//
// Decoding has three layers:
//
//   - schema.go: the block structure, as gohcl struct tags. gohcl reports
//     unknown arguments and block types (with "Did you mean" hints), missing
//     or extra labels and repeated singleton blocks.
//   - attrs.go, values.go: each attribute converted to a Go value (durations,
//     sizes, addresses, enums, ranges) with a diagnostic on the attribute's
//     value when it does not fit.
//   - validate_*.go, healthcheck.go: the rules between attributes and blocks
//     (RFC 3768/5798 limits, families, name uniqueness, references, TLS key
//     pairs), each reported on the offending attribute or label.
//
// Load and Parse keep going after an error so that one run reports every
// independent problem, and return a nil Config whenever there is an error.
// Blocks of a Feature that Options.Supported lacks are errors, never
// ignored.
//
// The package imports no other Fulcrum package. docs/config.md is the
// operator's reference; TestDocsDescribeSchema keeps it in step with the
// schema.
package config
