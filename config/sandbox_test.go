package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The dispatcher's sandbox opens the app's storage/ and bootstrap/cache/
// and what [app] writable adds; an app under /home stays readable.
func TestSandboxDropIn(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, src string
		want      []string
		home      bool
	}{
		{"defaults", "[app]\npath = \"/srv/app\"\n", []string{
			"ReadWritePaths=-/srv/app/storage", "ReadWritePaths=-/srv/app/bootstrap/cache"}, false},
		{"writable", "[app]\npath = \"/srv/app\"\nwritable = [\"database\", \"/var/uploads/\", \"my files\"]\n", []string{
			"ReadWritePaths=-/srv/app/database", "ReadWritePaths=-/var/uploads", `ReadWritePaths="-/srv/app/my files"`}, false},
		{"home", "[app]\npath = \"/home/forge/app\"\n", []string{"ReadWritePaths=-/home/forge/app/storage"}, true},
	} {
		c, err := Parse("/etc/kqueue/t.toml", []byte(tc.src))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := c.SandboxDropIn()
		if !strings.HasPrefix(got, "# Written by kqueue generator from /etc/kqueue/t.toml") || !strings.Contains(got, "\n[Service]\n") {
			t.Errorf("%s: drop-in:\n%s", tc.name, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w+"\n") {
				t.Errorf("%s: drop-in lacks %q:\n%s", tc.name, w, got)
			}
		}
		if strings.Contains(got, "ProtectHome=read-only") != tc.home {
			t.Errorf("%s: ProtectHome in\n%s", tc.name, got)
		}
	}
}

// kqueue check says, before a job fails on it, what the sandbox will
// block: a writable path that is missing, and a drop-in that is not the
// config's (no daemon-reload since the config changed).
func TestSandboxWarnings(t *testing.T) {
	t.Parallel()
	app, gen := t.TempDir(), t.TempDir()
	os.MkdirAll(filepath.Join(app, "storage"), 0o755)
	c, err := Parse("/etc/kqueue/web.toml", []byte("[app]\npath = \""+app+"\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	warns := strings.Join(c.SandboxWarnings(gen), "\n")
	for _, want := range []string{filepath.Join(app, "bootstrap", "cache") + " does not exist", "run systemctl daemon-reload"} {
		if !strings.Contains(warns, want) {
			t.Errorf("warnings lack %q:\n%s", want, warns)
		}
	}
	os.MkdirAll(filepath.Join(app, "bootstrap", "cache"), 0o755)
	if errs := WriteDropIns(t.TempDir(), gen); len(errs) != 0 { // no configs: nothing written
		t.Fatal(errs)
	}
	dir := filepath.Join(gen, "kqueue-dispatcher@web.service.d")
	os.MkdirAll(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "50-kqueue-sandbox.conf"), []byte(c.SandboxDropIn()), 0o644)
	if warns := c.SandboxWarnings(gen); len(warns) != 0 {
		t.Errorf("warnings with every path there and the drop-in current: %q", warns)
	}
}
