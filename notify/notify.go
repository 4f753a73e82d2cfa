// Package notify tells systemd about the process's state over
// $NOTIFY_SOCKET (sd_notify(3)): readiness, a status line, watchdog pings,
// stopping, reloading and extended stop timeouts. Without $NOTIFY_SOCKET
// every call does nothing.
package notify

import (
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// Notifier sends sd_notify messages.
type Notifier struct {
	watchdog time.Duration
}

// New reads $NOTIFY_SOCKET and $WATCHDOG_USEC.
func New() *Notifier {
	wd, _ := daemon.SdWatchdogEnabled(false)
	return &Notifier{watchdog: wd}
}

func (n *Notifier) send(state string) error {
	_, err := daemon.SdNotify(false, state)
	return err
}

// Ready says the service is up; status is its first STATUS= line.
func (n *Notifier) Ready(status string) error {
	return n.send(daemon.SdNotifyReady + "\nSTATUS=" + status)
}

// Status sets the line `systemctl status` shows.
func (n *Notifier) Status(status string) error { return n.send("STATUS=" + status) }

// Watchdog pings the watchdog: call it only from a healthy main loop.
func (n *Notifier) Watchdog() error { return n.send(daemon.SdNotifyWatchdog) }

// WatchdogInterval is how often to ping: half of WatchdogSec, or 0 when
// systemd expects no pings.
func (n *Notifier) WatchdogInterval() time.Duration { return n.watchdog / 2 }

// Stopping says a stop has begun.
func (n *Notifier) Stopping(status string) error {
	return n.send(daemon.SdNotifyStopping + "\nSTATUS=" + status)
}

// Reloading says a reload has begun; Ready ends it.
func (n *Notifier) Reloading() error {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return n.send(fmt.Sprintf("%s\nMONOTONIC_USEC=%d", daemon.SdNotifyReloading, ts.Nano()/1000))
}

// ExtendTimeout asks systemd for d more before it kills a stopping service.
func (n *Notifier) ExtendTimeout(d time.Duration) error {
	return n.send(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}
