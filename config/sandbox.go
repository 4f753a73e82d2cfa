package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// WritablePaths are the absolute paths PHP may write under the
// dispatcher's sandbox: the app's storage/ and bootstrap/cache/, then
// [app] writable.
func (c *Config) WritablePaths() []string {
	paths := []string{filepath.Join(c.App.Path, "storage"), filepath.Join(c.App.Path, "bootstrap", "cache")}
	for _, p := range c.App.Writable {
		if !filepath.IsAbs(p) {
			p = filepath.Join(c.App.Path, p)
		}
		paths = append(paths, filepath.Clean(p))
	}
	return paths
}

// underHome reports whether path is inside what ProtectHome= hides.
func underHome(path string) bool {
	for _, home := range []string{"/home", "/root", "/run/user"} {
		if path == home || strings.HasPrefix(path, home+"/") {
			return true
		}
	}
	return false
}

// SandboxDropIn is the drop-in that opens the dispatcher's sandbox to this
// instance's app (kqueue generator writes it for every
// /etc/kqueue/NAME.toml): its writable paths, and its home folder
// readable when the app lives in one.
func (c *Config) SandboxDropIn() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Written by kqueue generator from %s: the app's writable paths.\n[Service]\n", c.File)
	for _, p := range c.WritablePaths() {
		// "-": a path that does not exist yet is no error.
		fmt.Fprintf(&b, "ReadWritePaths=%s\n", unitPath("-"+p))
	}
	if underHome(c.App.Path) {
		b.WriteString("ProtectHome=read-only\n")
	}
	return b.String()
}

// WebDropIn is the console's drop-in (kqueue-web@NAME): the sandbox's
// writable paths, and the app's user to run as — the console reads and
// retries failed jobs, pauses and restarts through the app.
func (c *Config) WebDropIn() string {
	d := c.SandboxDropIn()
	if c.App.User != "" {
		d += "User=" + c.App.User + "\n"
	}
	return d
}

// unitPath writes a path as a unit file's path list takes it: one word,
// quoted when it holds a space, a quote or a backslash; % doubled (a
// specifier otherwise). Config paths hold no control character (Load
// refuses them).
func unitPath(p string) string {
	p = strings.ReplaceAll(p, "%", "%%")
	if !strings.ContainsAny(p, " \t\"'\\") {
		return p
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(p) + `"`
}

// WriteDropIns writes the sandbox drop-in (SandboxDropIn) of every
// instance config in etc (NAME.toml) into the systemd generator folder
// out, as kqueue-dispatcher@NAME.service.d/50-kqueue-sandbox.conf. A
// config that does not load is skipped and reported: its instance keeps
// the shipped sandbox, in which its app can write nothing.
func WriteDropIns(etc, out string) []error {
	files, err := filepath.Glob(filepath.Join(etc, "*.toml"))
	if err != nil {
		return []error{err}
	}
	var errs []error
	for _, f := range files {
		c, err := Load(f)
		if err == nil {
			err = writeDropIn(out, "kqueue-dispatcher@"+c.Name, c.SandboxDropIn())
		}
		if err == nil {
			err = writeDropIn(out, "kqueue-web@"+c.Name, c.WebDropIn())
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("kqueue generator: %s: %w", f, err))
		}
	}
	return errs
}

// writeDropIn writes the sandbox drop-in of unit (its name without
// ".service") into out.
func writeDropIn(out, unit, text string) error {
	dir := filepath.Join(out, unit+".service.d")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "50-kqueue-sandbox.conf"), []byte(text), 0o644)
}

// GeneratorDir is where systemd keeps what generators wrote.
const GeneratorDir = "/run/systemd/generator"

// SandboxWarnings says what the dispatcher's sandbox would block before a
// job fails on it: a writable path that does not exist (the sandbox opens
// only what is there at start), one the app's user cannot write, and a
// drop-in that is missing or older than the config (systemctl
// daemon-reload writes it again). generated is GeneratorDir, or "" when
// systemd does not run here.
func (c *Config) SandboxWarnings(generated string) []string {
	var warns []string
	for _, p := range c.WritablePaths() {
		if _, err := os.Stat(p); err != nil {
			warns = append(warns, fmt.Sprintf("sandbox: %s does not exist: create it (owned by the app's user) before kqueue starts, or PHP cannot write there", p))
		} else if c.App.User != "" && !writableBy(p, c.App.Credential()) {
			warns = append(warns, fmt.Sprintf("sandbox: %s is not writable by %s: the jobs cannot write there (chown -R %s %s)", p, c.App.User, c.App.User, p))
		}
	}
	if generated == "" || c.Name == "" {
		return warns
	}
	got, err := os.ReadFile(filepath.Join(generated, "kqueue-dispatcher@"+c.Name+".service.d", "50-kqueue-sandbox.conf"))
	if err != nil || string(got) != c.SandboxDropIn() {
		warns = append(warns, "sandbox: kqueue-dispatcher@"+c.Name+"'s writable paths are not those of "+c.File+": run systemctl daemon-reload, then restart kqueue@"+c.Name)
	}
	return warns
}

// writableBy reports whether a process with cred could write in path, by
// its mode bits.
func writableBy(path string, cred *syscall.Credential) bool {
	fi, err := os.Stat(path)
	if err != nil || cred == nil {
		return err == nil
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return true
	}
	mode := fi.Mode().Perm()
	switch {
	case cred.Uid == 0 || st.Uid == cred.Uid:
		return cred.Uid == 0 || mode&0o200 != 0
	case st.Gid == cred.Gid || slices.Contains(cred.Groups, st.Gid):
		return mode&0o020 != 0
	}
	return mode&0o002 != 0
}
