package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/poller"
)

// status prints a running instance's state, read from its control socket.
func status(ctx context.Context, cfg *config.Config, stdout io.Writer, asJSON bool) error {
	raw, err := poller.ReadStatus(ctx, cfg.Control.Socket)
	if errors.Is(err, poller.ErrNotRunning) {
		return fmt.Errorf("kqueue %s is %w", cfg.Name, err)
	} else if err != nil {
		return err
	}
	if asJSON {
		_, err := stdout.Write(raw)
		return err
	}
	var s poller.Snapshot
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("read status: %w", err)
	}
	s.WriteText(stdout)
	return nil
}
