package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"syscall"

	"github.com/kqueue/kqueue/config"
	"github.com/kqueue/kqueue/daemon"
	"github.com/kqueue/kqueue/journal"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

var errUsage = errors.New("usage: see kqueue --help")

// errUnknownCommand: the first argument names no command (exit 2).
var errUnknownCommand = errors.New("unknown command")

// run is the whole program, minus the process: testable.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	case "version", "--version":
		fmt.Fprintf(stdout, "kqueue %s\n", buildVersion())
		return nil
	case "generator":
		// systemd runs it (as kqueue-generator) with its output folders.
		if len(args) == 0 {
			return fmt.Errorf("generator: which folder? %w", errUsage)
		}
		return errors.Join(config.WriteDropIns(cmp.Or(os.Getenv("KQUEUE_CONFIG_DIR"), "/etc/kqueue"), args[0])...)
	}
	help, ok := commandHelp[cmd]
	if !ok {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w %q", errUnknownCommand, cmd)
	}

	fs := flag.NewFlagSet("kqueue "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stdout, help, commonFlags) }
	configPath := fs.String("config", "/etc/kqueue/default.toml", "")
	stopWhenEmpty := fs.Bool("stop-when-empty", false, "")
	logFormat := fs.String("log-format", "text", "")
	logLevel := fs.String("log-level", "info", "")
	cpuProfile := fs.String("cpuprofile", "", "")
	asJSON := fs.Bool("json", false, "")
	remove := fs.Bool("remove", false, "")
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		// kqueue status NAME: the instance NAME's config.
		args = append([]string{"--config", "/etc/kqueue/" + args[0] + ".toml"}, args[1:]...)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		fmt.Fprint(stderr, help, commonFlags)
		return errUsage
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q: %w", fs.Arg(0), errUsage)
	}
	if *cpuProfile != "" {
		stop, err := startCPUProfile(*cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	log, flush, err := journal.NewLogger(stderr, *logFormat, *logLevel)
	if err != nil {
		return err
	}
	defer flush()
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}

	// SIGHUP (systemctl reload) reads the config again.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	opts := daemon.Options{Version: buildVersion(), StopWhenEmpty: *stopWhenEmpty, Reload: hup}
	switch cmd {
	case "run":
		return daemon.Run(ctx, cfg, log, opts)
	case "poller":
		return daemon.Poller(ctx, cfg, log, opts)
	case "dispatcher":
		return daemon.Dispatcher(ctx, cfg, log, opts)
	case "web":
		return daemon.Web(ctx, cfg, log, opts)
	case "check":
		return check(ctx, cfg, stdout)
	case "status":
		return status(ctx, cfg, stdout, *asJSON)
	case "trigger":
		return installTrigger(ctx, cfg, stdout, *remove)
	}
	panic("unreachable: every command in commandHelp is handled above")
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err == nil {
		err = pprof.StartCPUProfile(f)
	}
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && version == "dev" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return version
}
