// Package php ships the PHP side of kqueue's warm pool: worker.php, which
// boots a Laravel app once and runs jobs through Laravel's own Worker, and
// the classes it loads.
package php

import (
	"bytes"
	"embed"
	"fmt"
	"os"
	"path/filepath"
)

//go:embed *.php
var files embed.FS

// Dir is where a package installs these same files (the Debian package sets
// it to /usr/share/kqueue/php at build time). Empty in a development build.
var Dir string

// Install returns the path of a worker.php to run: the installed one in Dir
// when its files are byte for byte the ones built in, else a copy written
// into dir.
func Install(dir string) (string, error) {
	entries, err := files.ReadDir(".")
	if err != nil {
		return "", err
	}
	if Dir != "" && installed(Dir) {
		return filepath.Join(Dir, "worker.php"), nil
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

// installed reports whether dir holds every PHP file, unchanged.
func installed(dir string) bool {
	entries, _ := files.ReadDir(".")
	for _, e := range entries {
		want, _ := files.ReadFile(e.Name())
		got, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || !bytes.Equal(got, want) {
			return false
		}
	}
	return true
}
