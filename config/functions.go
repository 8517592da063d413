package config

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Size limits of the files the configuration reads.
const (
	maxConfigFileSize = 16 << 20 // the configuration file itself
	maxAuxFileSize    = 1 << 20  // file(), certificates, keys, OCSP responses
)

// system is the outside world the decoder reads: the environment and files.
// Tests and the fuzz target replace it; Load and Parse use the real one.
type system struct {
	lookupEnv func(name string) (string, bool)
	// readFile reads a regular file of at most limit bytes.
	readFile func(path string, limit int64) ([]byte, error)
}

func osSystem() system {
	return system{lookupEnv: os.LookupEnv, readFile: readRegularFile}
}

// fileError is a constant error value, so the sentinels below are constants
// rather than package-level variables.
type fileError string

func (e fileError) Error() string { return string(e) }

const (
	// errFileTooLarge is returned (wrapped) for a file over the size limit.
	errFileTooLarge fileError = "file too large"
	// errNotRegular is returned (wrapped) for a path that is not a regular
	// file, so that a typo like file("/dev/zero") cannot hang the agent.
	errNotRegular fileError = "not a regular file"
)

func readRegularFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // *os.PathError already names the operation and path
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", path, errNotRegular)
	}
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: %w (limit %d bytes)", path, errFileTooLarge, limit)
	}
	return data, nil
}

// resolvePath makes p absolute, relative to the configuration file's
// directory.
func resolvePath(baseDir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(baseDir, p)
}

// evalContext is the context every expression is evaluated in: no
// variables, and the functions env, file and trimspace.
func evalContext(baseDir string, sys system) *hcl.EvalContext {
	return &hcl.EvalContext{
		Functions: map[string]function.Function{
			"env":       envFunc(sys.lookupEnv),
			"file":      fileFunc(baseDir, sys.readFile),
			"trimspace": stdlib.TrimSpaceFunc,
		},
	}
}

// envFunc is env(NAME) or env(NAME, DEFAULT): the value of an environment
// variable of the agent's process. An unset variable without a default is
// an error (a set but empty one is not).
func envFunc(lookup func(string) (string, bool)) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the value of an environment variable, or the default if given and the variable is unset.",
		Params:      []function.Parameter{{Name: "name", Type: cty.String}},
		VarParam:    &function.Parameter{Name: "default", Type: cty.String},
		Type: func(args []cty.Value) (cty.Type, error) {
			if len(args) > 2 {
				return cty.NilType, function.NewArgErrorf(2, "env takes a name and at most one default, not %d arguments", len(args))
			}
			return cty.String, nil
		},
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			name := args[0].AsString()
			if name == "" {
				return cty.NilVal, function.NewArgErrorf(0, "the variable name is empty")
			}
			if v, ok := lookup(name); ok {
				if !utf8.ValidString(v) {
					return cty.NilVal, fmt.Errorf("environment variable %q is not valid UTF-8", name)
				}
				return cty.StringVal(v), nil
			}
			if len(args) == 2 {
				return args[1], nil
			}
			return cty.NilVal, fmt.Errorf("environment variable %q is not set; set it or give a default: env(%q, \"...\")", name, name)
		},
	})
}

// fileFunc is file(PATH): the contents of a file, relative paths resolved
// against the configuration file's directory. Nothing is trimmed; use
// trimspace(file(...)) for a file ending in a newline.
func fileFunc(baseDir string, read func(string, int64) ([]byte, error)) function.Function {
	return function.New(&function.Spec{
		Description: "Returns the contents of a file, relative to the configuration file's directory.",
		Params:      []function.Parameter{{Name: "path", Type: cty.String}},
		Type:        function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			p := args[0].AsString()
			if p == "" {
				return cty.NilVal, function.NewArgErrorf(0, "the path is empty")
			}
			data, err := read(resolvePath(baseDir, p), maxAuxFileSize)
			if err != nil {
				return cty.NilVal, fmt.Errorf("cannot read file: %w", err)
			}
			if !utf8.Valid(data) {
				return cty.NilVal, fmt.Errorf("%s is not valid UTF-8 text", resolvePath(baseDir, p))
			}
			return cty.StringVal(string(data)), nil
		},
	})
}
