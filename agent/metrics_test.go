package agent

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func requireSeries(t *testing.T, body string, patterns ...string) {
	t.Helper()
	for _, p := range patterns {
		if !regexp.MustCompile("(?m)^" + p).MatchString(body) {
			t.Errorf("metrics lack %s", p)
		}
	}
}

func TestMetricsEndpoint(t *testing.T) {
	addr := freeAddr(t, "127.0.0.1")
	ta := startAgent(t, testConfig{metrics: addr})
	url := "http://" + addr + "/metrics"
	code, body := scrape(t, url)
	if code != http.StatusOK {
		t.Fatalf("scrape: %d", code)
	}
	requireSeries(t, body,
		`fulcrum_build_info\{go="go-test",version="v0.0.0-test"\} 1$`,
		`fulcrum_config_generation 1$`,
		`fulcrum_config_reloads_total\{result="success"\} 0$`,
		`fulcrum_config_reloads_total\{result="failure"\} 0$`,
		`fulcrum_config_last_reload_success_timestamp_seconds \d`,
		`fulcrum_events_published_total [1-9]`,
		`go_goroutines `,
		`process_start_time_seconds `,
	)

	writeFile(t, ta.cfgPath, badConfig)
	ta.Reload(context.Background())
	ta.rewrite(t, testConfig{metrics: addr})
	ta.Reload(context.Background())
	_, body = scrape(t, url)
	requireSeries(t, body,
		`fulcrum_config_generation 2$`,
		`fulcrum_config_reloads_total\{result="success"\} 1$`,
		`fulcrum_config_reloads_total\{result="failure"\} 1$`,
	)
	if code, _ := scrape(t, "http://"+ta.metricsAddr()+"/other"); code != http.StatusNotFound {
		t.Errorf("other path: %d", code)
	}
}

func TestMetricsFollowReload(t *testing.T) {
	first := freeAddr(t, "127.0.0.1")
	ta := startAgent(t, testConfig{metrics: first})

	// Same listener, other path.
	ta.rewrite(t, testConfig{metrics: first, metricsPath: "/m2"})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatal(res)
	}
	if ta.metricsAddr() != first {
		t.Fatalf("path change rebound %s -> %s", first, ta.metricsAddr())
	}
	if code, _ := scrape(t, "http://"+first+"/m2"); code != http.StatusOK {
		t.Errorf("new path: %d", code)
	}
	if code, _ := scrape(t, "http://"+first+"/metrics"); code != http.StatusNotFound {
		t.Errorf("old path: %d", code)
	}

	// Another listen address: rebind.
	second := freeAddr(t, "127.0.0.2")
	ta.rewrite(t, testConfig{metrics: second})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatal(res)
	}
	if got := ta.metricsAddr(); got != second {
		t.Fatalf("metrics at %s, want %s", got, second)
	}
	if code, _ := scrape(t, "http://"+second+"/metrics"); code != http.StatusOK {
		t.Errorf("rebound: %d", code)
	}
	eventually(t, "old listener closed", func() bool {
		_, err := http.Get("http://" + first + "/metrics")
		return err != nil
	})

	// Metrics block removed: off.
	ta.rewrite(t, testConfig{})
	if res := ta.Reload(context.Background()); !res.OK {
		t.Fatal(res)
	}
	if ta.metricsAddr() != "" {
		t.Fatal("metrics still on")
	}
}

func TestMetricsRegistryIsPrivate(t *testing.T) {
	a, err := newTestAgent(t, testConfig{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := newTestAgent(t, testConfig{}) // registering twice would panic on a shared registry
	if err != nil {
		t.Fatal(err)
	}
	if a.Registry() == b.Registry() {
		t.Fatal("agents share a registry")
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "fulcrum_") {
			t.Errorf("%s registered on the default registry", mf.GetName())
		}
	}
	// Subsystems add their own series.
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "fulcrum_test_total", Help: "test"})
	if err := a.Registry().Register(c); err != nil {
		t.Fatal(err)
	}
}
