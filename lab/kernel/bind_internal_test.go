package kernel

import "testing"

// TestHiddenBind: a working directory below the guest's own /tmp, /run or /dev is bound in from
// the host (CI may check the repository out under /tmp); elsewhere nothing is needed.
func TestHiddenBind(t *testing.T) {
	for dir, want := range map[string]string{
		"/tmp/ci/lab/kernel": "/tmp/ci/lab/kernel",
		"/run/x/":            "/run/x",
		"/tmp":               "",
		"/tmpfoo/bar":        "",
		"/work/main":         "",
		"/":                  "",
	} {
		if got := hiddenBind(dir); got != want {
			t.Errorf("hiddenBind(%q) = %q, want %q", dir, got, want)
		}
	}
}
