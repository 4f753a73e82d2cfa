package testenv

import (
	"cmp"
	"os"
	"path/filepath"
	"testing"
)

// Laravel is one Laravel version of the compatibility matrix
// (docs/laravel-queue.md): Debian's php-laravel-framework on this host,
// or in an mmdebstrap chroot of a later Debian suite that
// testdata/chroots.sh builds.
type Laravel struct {
	Version string // the major version, "8"
	Suite   string // the chroot's Debian suite; "" = this host
}

// Versions is the matrix: Laravel 8.83 (this host, Debian 12), 10.48
// (trixie) and 13 (sid), each with PHP from the same suite.
func Versions() []Laravel {
	return []Laravel{{"8", ""}, {"10", "trixie"}, {"13", "sid"}}
}

// Root finds the version's chroot ("" for this host). A chroot that is
// missing, or a test not run as root (chroot(2) needs it), fails the test
// under CI=true and skips it elsewhere, saying how to build it.
func (l Laravel) Root(t testing.TB) string {
	t.Helper()
	if l.Suite == "" {
		return ""
	}
	miss := t.Skipf
	if os.Getenv("CI") != "" {
		miss = t.Fatalf
	}
	if os.Geteuid() != 0 {
		miss("Laravel %s runs in a chroot, and chroot needs root", l.Version)
		return ""
	}
	dir := filepath.Join(cmp.Or(os.Getenv("KQ_CHROOTS"), "/var/tmp/kqueue-chroots"), l.Suite)
	if _, err := os.Stat(filepath.Join(dir, "usr", "bin", "php")); err != nil {
		miss("Laravel %s needs the %s chroot at %s: build it with make chroots (testdata/chroots.sh): %v", l.Version, l.Suite, dir, err)
		return ""
	}
	return dir
}
