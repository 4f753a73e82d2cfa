// Command kqueue runs Laravel queue jobs from Laravel's own Redis queues in
// a warm pool of PHP workers. See `kqueue --help`.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func main() {
	// kqueue's goroutines hand work on; the PHP workers do it. With one P
	// per CPU, idle Ps spin looking for work on the cores the workers need
	// (2 cores, 20,000 no-ops: about 8 % more jobs a second with one P).
	// A third of the CPUs, at least one; GOMAXPROCS in the environment wins.
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(max(1, runtime.GOMAXPROCS(0)/3))
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "kqueue: %v\n", err)
		if errors.Is(err, errUsage) || errors.Is(err, errUnknownCommand) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}
