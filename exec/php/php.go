// Package php ships the PHP side of kqueue's warm pool: worker.php, which
// boots a Laravel app once and runs jobs through Laravel's own Worker, and
// the classes it loads.
package php

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed *.php
var files embed.FS

// Install writes the PHP files into dir and returns worker.php's path.
func Install(dir string) (string, error) {
	entries, err := files.ReadDir(".")
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			return "", err
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return "", fmt.Errorf("install %s: %w", e.Name(), err)
		}
	}
	return filepath.Join(dir, "worker.php"), nil
}
