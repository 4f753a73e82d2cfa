package daemon

import (
	"fmt"
	"log/slog"
	"strconv"

	"github.com/kqueue/kqueue/config"
)

// adopt completes cfg with the app's queue configuration (answer, as
// exec.Dispatcher.App reads it): kqueue.toml's own values win. What came
// from the app is logged, each disagreement is a warning (an error when
// kqueue would see no job).
func adopt(cfg *config.Config, answer []byte, readErr error, log *slog.Logger) error {
	var l *config.Laravel
	var notes []config.Note
	err := readErr
	if err == nil {
		l, err = config.ParseLaravel(answer)
	}
	if err == nil {
		notes, err = cfg.Adopt(l)
	}
	if err != nil {
		return fmt.Errorf("%w (set these values in %s, or fix the app)", err, cfg.File)
	}
	var taken []any
	for _, n := range notes {
		switch {
		case n.Fatal:
			log.Error("no job will be seen: " + n.String())
		case n.Disagree:
			log.Warn("kqueue.toml and the app disagree: " + n.String())
		default:
			v := n.Value
			if u, err := strconv.Unquote(v); err == nil {
				v = u // a quoted string: its text
			}
			taken = append(taken, n.Key, v)
		}
	}
	log.Info("read the app's queue configuration", append([]any{"laravel", l.Version}, taken...)...)
	if w := l.FailedWarning(); w != "" {
		log.Warn(w)
	}
	return nil
}
