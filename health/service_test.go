package health_test

import (
	"errors"
	"testing"

	"github.com/fulcrum-lb/fulcrum/health"
)

type upSet map[string]bool

func (u upSet) Healthy(id string) bool { return u[id] }

// trackService is the interface VRRP's track_service uses (vrrp.ServiceHealth); health must
// satisfy it without importing vrrp.
type trackService interface {
	ServiceHealthy(name string) (bool, error)
}

func TestServiceHealth(t *testing.T) {
	src := upSet{"a": true, "b": true, "c": false}
	var sh trackService = health.NewServiceHealth(src)
	err := sh.(*health.ServiceHealth).Set(map[string]health.ServicePolicy{
		"all-up":   {IDs: []string{"a", "b"}},
		"all-one":  {IDs: []string{"a", "c"}, Mode: health.ModeAll},
		"any":      {IDs: []string{"c", "b"}, Mode: health.ModeAny},
		"any-none": {IDs: []string{"c", "unknown"}, Mode: health.ModeAny},
		"q2":       {IDs: []string{"a", "b", "c"}, Mode: health.ModeQuorum, Quorum: 2},
		"q3":       {IDs: []string{"a", "b", "c"}, Mode: health.ModeQuorum, Quorum: 3},
	})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]bool{"all-up": true, "all-one": false, "any": true, "any-none": false, "q2": true, "q3": false} {
		got, err := sh.ServiceHealthy(name)
		if err != nil || got != want {
			t.Errorf("ServiceHealthy(%q) = %v, %v; want %v", name, got, err, want)
		}
	}
	if _, err := sh.ServiceHealthy("nope"); !errors.Is(err, health.ErrUnknownService) {
		t.Errorf("unknown service: %v, want ErrUnknownService", err)
	}
	src["c"] = true
	if ok, _ := sh.ServiceHealthy("q3"); !ok {
		t.Error("q3 not healthy once all three are up")
	}

	bad := map[string]health.ServicePolicy{
		"empty": {},
		"q0":    {IDs: []string{"a"}, Mode: health.ModeQuorum},
		"q9":    {IDs: []string{"a"}, Mode: health.ModeQuorum, Quorum: 9},
		"mode":  {IDs: []string{"a"}, Mode: 7},
	}
	if err := sh.(*health.ServiceHealth).Set(bad); err == nil {
		t.Fatal("Set accepted invalid policies")
	}
	if ok, err := sh.ServiceHealthy("all-up"); !ok || err != nil {
		t.Error("a rejected Set changed the services")
	}
}

func TestServiceHealthOverScheduler(t *testing.T) {
	// The Scheduler is a HealthSource.
	var _ health.HealthSource = health.New(health.Options{})
}
