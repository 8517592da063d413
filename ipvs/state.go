package ipvs

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
)

// DefaultStateFile is where the agent records which services it owns.
const DefaultStateFile = "/var/lib/fulcrum/ipvs-owned.json"

// stateVersion is the state file's format version.
const stateVersion = 1

// stateFile is the JSON form of the ownership record:
//
//	{"version":1,"owned":["tcp/192.0.2.1:80","fwmark/ipv4/10"],
//	 "drained":[{"service":"tcp/192.0.2.1:80","destination":"198.51.100.10:80"}]}
//
// owned lists the services this agent created or adopted; drained lists the operator's
// drain overrides, so that a restart keeps a drained server drained.
type stateFile struct {
	Version int          `json:"version"`
	Owned   []ServiceKey `json:"owned"`
	Drained []destRef    `json:"drained,omitempty"`
}

// destRef names a destination of a service.
type destRef struct {
	Service     ServiceKey     `json:"service"`
	Destination netip.AddrPort `json:"destination"`
}

// loadState reads the state file; a missing file is an empty state.
func loadState(path string) (stateFile, error) {
	var st stateFile
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return stateFile{Version: stateVersion}, nil
	}
	if err != nil {
		return st, fmt.Errorf("%w: %w", ErrStateFile, err)
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%w: %s: %w (remove it to start over: services it listed are then left alone unless the desired state names them)", ErrStateFile, path, err)
	}
	if st.Version != stateVersion {
		return st, fmt.Errorf("%w: %s: version %d, this build reads version %d", ErrStateFile, path, st.Version, stateVersion)
	}
	return st, nil
}

// saveState writes the state file atomically: a temporary file in the same folder, synced,
// renamed over the old one, and the folder synced, so a crash leaves the old or the new
// content, never a mix.
func saveState(path string, owned map[ServiceKey]struct{}, drained map[destRef]struct{}) error {
	st := stateFile{Version: stateVersion, Owned: make([]ServiceKey, 0, len(owned))}
	for k := range owned {
		st.Owned = append(st.Owned, k)
	}
	slices.SortFunc(st.Owned, compareKeys)
	for d := range drained {
		st.Drained = append(st.Drained, d)
	}
	slices.SortFunc(st.Drained, func(a, b destRef) int {
		if c := compareKeys(a.Service, b.Service); c != 0 {
			return c
		}
		return a.Destination.Compare(b.Destination)
	})
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStateFile, err)
	}
	data = append(data, '\n')

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("%w: %w", ErrStateFile, err)
	}
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStateFile, err)
	}
	tmp := f.Name()
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrStateFile, tmp, err)
	}
	if err := f.Chmod(0o600); err != nil {
		return fmt.Errorf("%w: %w", ErrStateFile, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("%w: sync %s: %w", ErrStateFile, tmp, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("%w: close %s: %w", ErrStateFile, tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("%w: %w", ErrStateFile, err)
	}
	ok = true
	if d, err := os.Open(dir); err == nil {
		err = d.Sync()
		d.Close()
		if err != nil {
			return fmt.Errorf("%w: sync %s: %w", ErrStateFile, dir, err)
		}
	}
	return nil
}

// compareKeys orders service keys: address services by protocol, address, port; then
// firewall-mark services by family and mark.
func compareKeys(a, b ServiceKey) int {
	if a.IsMark() != b.IsMark() {
		if a.IsMark() {
			return 1
		}
		return -1
	}
	if a.IsMark() {
		if a.Family != b.Family {
			return int(a.Family) - int(b.Family)
		}
		switch {
		case a.FWMark < b.FWMark:
			return -1
		case a.FWMark > b.FWMark:
			return 1
		}
		return 0
	}
	if a.Protocol != b.Protocol {
		return int(a.Protocol) - int(b.Protocol)
	}
	return a.Addr.Compare(b.Addr)
}
