package php

import (
	"os"
	"path/filepath"
	"testing"
)

func TestInstallPrefersTheInstalledCopy(t *testing.T) {
	pkg, tmp := t.TempDir(), t.TempDir()
	if _, err := Install(pkg); err != nil {
		t.Fatal(err)
	}
	Dir = pkg
	t.Cleanup(func() { Dir = "" })

	got, err := Install(tmp)
	if err != nil || got != filepath.Join(pkg, "worker.php") {
		t.Fatalf("Install = %q, %v; want the installed worker.php", got, err)
	}

	// An installed copy from another version is not used.
	if err := os.WriteFile(filepath.Join(pkg, "job.php"), []byte("<?php // old"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err = Install(tmp)
	if err != nil || got != filepath.Join(tmp, "worker.php") {
		t.Fatalf("Install = %q, %v; want a fresh copy in %s", got, err, tmp)
	}
}
