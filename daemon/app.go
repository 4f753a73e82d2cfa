package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/exec"
)

// adoptApp reads the app's queue configuration at start-up (exec.ReadApp): what came from the app is logged, each
// disagreement is a warning (an error when kqueue would see no job).
func adoptApp(ctx context.Context, cfg *config.Config, log *slog.Logger) error {
	notes, err := exec.ReadApp(ctx, cfg)
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
			taken = append(taken, n.Key, strings.Trim(n.Value, `"`))
		}
	}
	l := cfg.Laravel
	log.Info("read the app's queue configuration", append([]any{"laravel", l.Version}, taken...)...)
	if w := l.FailedWarning(); w != "" {
		log.Warn(w)
	}
	return nil
}
