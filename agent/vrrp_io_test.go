package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"testing"

	"github.com/fulcrum-lb/fulcrum/vrrp/netio"
)

func TestWatchErrorLevel(t *testing.T) {
	skipped := fmt.Errorf("netio: link subscription: %w: %w", netio.ErrSubscriptionNotice, errors.New("Wrong sender portid 7, expected 0"))
	lost := fmt.Errorf("netio: watch links: %w; subscribing again", netio.ErrSubscriptionLost)
	for _, c := range []struct {
		err  error
		want slog.Level
	}{{skipped, slog.LevelDebug}, {lost, slog.LevelWarn}, {errors.New("lookup failed"), slog.LevelWarn}} {
		if got := watchErrorLevel(c.err); got != c.want {
			t.Errorf("watchErrorLevel(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
