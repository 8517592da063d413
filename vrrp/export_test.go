package vrrp

import "context"

// Flush waits until the VIP worker and the callbacks have done what was
// queued so far.
func (i *Instance) Flush(ctx context.Context) error { return i.flush(ctx) }

// Test access to the tracker helpers.
var (
	Strtol           = strtol
	FileTracker      = fileTracker
	ReadTrackFile    = readTrackFile
	RunningProcesses = runningProcesses
)
