package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// proxyStateFileName is the record of operator-disabled proxy servers in
// the state folder: `fulcrum proxy disable` lasts across restarts, as an
// IPVS drain does (HAProxy needs server-state-file for that).
const proxyStateFileName = "proxy-disabled.json"

// proxyState is the file's content.
type proxyState struct {
	// Disabled lists "proxy/backend/server" keys.
	Disabled []string `json:"disabled"`
}

// loadProxyDisabled reads the record; a missing file is an empty one.
func loadProxyDisabled(path string) (map[string]bool, error) {
	out := map[string]bool{}
	if path == "" {
		return out, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("proxy state: %w", err)
	}
	var st proxyState
	if err := json.Unmarshal(b, &st); err != nil {
		return out, fmt.Errorf("proxy state %s: %w", path, err)
	}
	for _, k := range st.Disabled {
		out[k] = true
	}
	return out, nil
}

// saveProxyDisabled replaces the record atomically (a temporary file
// renamed over it), so a crash leaves the old record or the new one.
func saveProxyDisabled(path string, disabled map[string]bool) error {
	if path == "" {
		return nil
	}
	st := proxyState{Disabled: make([]string, 0, len(disabled))}
	for k := range disabled {
		st.Disabled = append(st.Disabled, k)
	}
	sort.Strings(st.Disabled)
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("proxy state: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("proxy state: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+proxyStateFileName+".*")
	if err != nil {
		return fmt.Errorf("proxy state: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("proxy state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("proxy state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("proxy state: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("proxy state: %w", err)
	}
	return nil
}
