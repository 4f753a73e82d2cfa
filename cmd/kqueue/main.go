// Command kqueue runs Laravel queue jobs from Laravel's own Redis queues in
// a warm pool of PHP workers. See `kqueue --help`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "kqueue: %v\n", err)
		if err == errUsage {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
