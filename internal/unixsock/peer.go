package unixsock

import (
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"
)

// Allowed reports whether the process at the other end of a unix
// connection may use kqueue's sockets: root, kqueue's own user, or a
// process of its group (kqueue, under systemd). The sockets' mode (0660)
// already keeps others out; this holds even when a mode is loosened. who
// names the peer for the log.
func Allowed(c net.Conn) (ok bool, who string) {
	uc, isUnix := c.(*net.UnixConn)
	if !isUnix {
		return false, "not a unix socket peer"
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return false, err.Error()
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return false, fmt.Sprintf("unknown peer (%v%v)", err, cerr)
	}
	who = fmt.Sprintf("pid %d, uid %d, gid %d", cred.Pid, cred.Uid, cred.Gid)
	return cred.Uid == 0 || int(cred.Uid) == os.Geteuid() || int(cred.Gid) == os.Getegid(), who
}
