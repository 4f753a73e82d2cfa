package exec

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/kqueue/kqueue/internal/testenv"
)

// The fork socket belongs to the user the isolated jobs run as, also after
// a reload changed [app] user (before, it kept the old owner, and every
// isolated job waited 10 s for a fork that could not reach it, then booted
// a fresh PHP). The template here cannot boot (no PHP): the socket is
// handed over before it starts.
func TestForkSocketFollowsTheAppUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("changing a file's owner needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	uid, _ := strconv.Atoi(nobody.Uid)
	gid, _ := strconv.Atoi(nobody.Gid)
	cfg := Config{AppPath: t.TempDir(), PHP: "/bin/false", BootTimeout: 5 * time.Second}
	cfg.setDefaults()
	st := newSettings(cfg)
	f, err := newForker(st, "worker.php", t.TempDir(), testenv.NewLogs().Logger())
	if err != nil {
		t.Fatal(err)
	}
	defer f.close()
	reloaded := cfg
	reloaded.User = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	st.p.Store(&reloaded)
	if _, err := f.fork(); err == nil {
		t.Fatal("a template booted without PHP")
	}
	fi, err := os.Stat(f.socket)
	if err != nil {
		t.Fatal(err)
	}
	if owner := fi.Sys().(*syscall.Stat_t).Uid; owner != uint32(uid) {
		t.Errorf("fork socket owned by %d after the reload, want nobody (%d)", owner, uid)
	}
}
