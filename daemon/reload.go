package daemon

import (
	"context"
	"log/slog"
	"os"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/exec"
	"github.com/kqueue/kqueue/notify"
)

// reloads re-reads the config on each signal from hup (SIGHUP: systemctl
// reload) and hands it to apply, until ctx is done or the returned
// function is called. A config that does not load changes nothing: kqueue
// runs on with the old one and says why. n, when set, hears RELOADING=1
// and READY=1.
func reloads(ctx context.Context, cfg *config.Config, hup <-chan os.Signal, n *notify.Notifier, log *slog.Logger, apply func(*config.Config)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				reload(cfg, n, log, apply)
			}
		}
	}()
	return func() { cancel(); <-done }
}

// reload reads the config again and applies it.
func reload(cfg *config.Config, n *notify.Notifier, log *slog.Logger, apply func(*config.Config)) {
	if n != nil {
		n.Reloading()
	}
	next, err := config.Load(cfg.File)
	if err == nil && cfg.Laravel != nil {
		// The app's configuration as read at start-up: what it changes
		// applies at the next restart anyway.
		_, err = next.Adopt(cfg.Laravel)
	}
	if err != nil {
		log.Error("reload: the config has errors; running on with the previous one", "error", err)
		if n != nil {
			n.Ready("reload failed: the config has errors (see the journal)")
		}
		return
	}
	apply(next)
	if n != nil {
		n.Ready("reloaded")
	}
}

// reloadDispatcher applies a reloaded config to the dispatcher: its
// workers are replaced once idle, with the new settings.
func reloadDispatcher(d *dispatcherPart, next *config.Config, log *slog.Logger) {
	log.Info("reload: replacing every PHP worker once it is idle, with the new config")
	for _, key := range d.Reload(exec.FromConfig(next, d.driver)) {
		log.Warn("reload: " + key + " changed; it applies at the next restart")
	}
}

// reloadPoller reports what a reloaded config changes on the poller's
// side: those settings apply at the next restart.
func reloadPoller(cfg, next *config.Config, log *slog.Logger) {
	for _, key := range cfg.RestartNeeded(next) {
		log.Warn("reload: [" + key + "] changed; it applies at the next restart (systemctl restart kqueue@" + cfg.Name + ")")
	}
}
