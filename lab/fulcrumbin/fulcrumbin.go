// Package fulcrumbin builds the fulcrum binary once per test package, for
// end-to-end tests that run it as a process the way operators and systemd
// do:
//
//	var binary string
//
//	func TestMain(m *testing.M) { os.Exit(fulcrumbin.Main(m, &binary)) }
package fulcrumbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Build compiles cmd/fulcrum statically (CGO_ENABLED=0, so it also runs in
// the kernel lab guest) into a new temporary directory. remove deletes it.
func Build() (path string, remove func(), err error) {
	dir, err := os.MkdirTemp("", "fulcrum-bin-")
	if err != nil {
		return "", nil, fmt.Errorf("fulcrumbin: %w", err)
	}
	remove = func() { os.RemoveAll(dir) }
	path = filepath.Join(dir, "fulcrum")
	build := exec.Command("go", "build", "-o", path, "github.com/fulcrum-lb/fulcrum/cmd/fulcrum")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		remove()
		return "", nil, fmt.Errorf("fulcrumbin: building fulcrum: %w\n%s", err, out)
	}
	return path, remove, nil
}

// Main builds the binary into *binary, runs the package's tests and removes
// the binary; it returns the exit code for os.Exit.
func Main(m *testing.M, binary *string) int {
	path, remove, err := Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer remove()
	*binary = path
	return m.Run()
}
