package agent

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier sends service state to the service manager (sd_notify). state is
// one or more newline-separated VAR=VALUE assignments sent as one message.
type Notifier interface {
	Notify(state string) error
}

// SystemdNotifier is the Notifier used in production: it sends to
// $NOTIFY_SOCKET with go-systemd's daemon.SdNotify and does nothing when the
// variable is unset (not running under systemd).
type SystemdNotifier struct{}

// Notify implements Notifier.
func (SystemdNotifier) Notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Notification states the agent sends.
const (
	notifyReady     = daemon.SdNotifyReady     // READY=1
	notifyStopping  = daemon.SdNotifyStopping  // STOPPING=1
	notifyReloading = daemon.SdNotifyReloading // RELOADING=1
	notifyWatchdog  = daemon.SdNotifyWatchdog  // WATCHDOG=1
)

// Clock tells the time. Tests use a fixed clock.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// monotonicUsec reads CLOCK_MONOTONIC in microseconds, as systemd expects in
// MONOTONIC_USEC= next to RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1e3
}

// reloadingState is the message sent when a reload starts.
func reloadingState() string {
	return fmt.Sprintf("%s\nMONOTONIC_USEC=%d", notifyReloading, monotonicUsec())
}

// notify sends state and logs (does not return) a failure: the agent keeps
// working when the service manager cannot be told.
func (a *Agent) notify(state string) {
	if err := a.notifier.Notify(state); err != nil {
		a.log.Warn("service manager notification failed", slog.String("state", state), slog.Any("error", err))
	}
}

// notifyStatus sends a STATUS= line shown by systemctl status.
func (a *Agent) notifyStatus(format string, args ...any) {
	a.notify("STATUS=" + fmt.Sprintf(format, args...))
}

// watchdogTimeout returns the watchdog timeout: the Options value, else
// WATCHDOG_USEC (via daemon.SdWatchdogEnabled), else 0 (disabled).
func (a *Agent) watchdogTimeout() time.Duration {
	if a.opts.Watchdog > 0 {
		return a.opts.Watchdog
	}
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		a.log.Warn("ignoring watchdog settings", slog.Any("error", err))
		return 0
	}
	return d
}

// runWatchdog pings the service manager every timeout/2 until ctx is done.
func (a *Agent) runWatchdog(ctx context.Context, timeout time.Duration) {
	t := time.NewTicker(timeout / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			a.notify(notifyWatchdog)
		}
	}
}
