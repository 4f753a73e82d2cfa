// Package unixsock is kqueue's unix sockets: the dispatcher's and the
// control socket, made the same way and open to the same processes.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/coreos/go-systemd/v22/activation"
)

// Listen listens at path, mode 0660 (root, kqueue's user and its group),
// replacing a socket left behind by an earlier run and making its
// directory if it is missing.
func Listen(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}

// Inherited is the socket systemd passed this process (socket activation,
// $LISTEN_FDS), or nil. Any others it passed are closed.
func Inherited() (net.Listener, error) {
	lns, err := activation.Listeners()
	if err != nil {
		return nil, fmt.Errorf("socket activation: %w", err)
	}
	if len(lns) == 0 || lns[0] == nil {
		return nil, nil
	}
	for _, extra := range lns[1:] {
		if extra != nil {
			extra.Close()
		}
	}
	return lns[0], nil
}

// Accept waits for the next connection from an allowed process (see
// Allowed); refused ones are closed, and told to refused.
func Accept(ln net.Listener, refused func(who string)) (net.Conn, error) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return nil, err
		}
		if ok, who := Allowed(c); !ok {
			refused(who)
			c.Close()
			continue
		}
		return c, nil
	}
}
