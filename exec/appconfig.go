package exec

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/kqueue/kqueue/exec/php"
)

// ErrAppConfig wraps every failure to read the app's queue configuration.
var ErrAppConfig = errors.New("read the app's queue configuration")

// AppConfig boots the Laravel app at cfg.AppPath once, as a worker would
// (cfg's php binary, user and environment), and returns what appconfig.php
// says about its queue configuration: one JSON object (exec/php/appconfig.php
// documents it). cfg.Connection names the queue connection to describe;
// empty, the app's default (queue.default). The app's own output is kept
// for the error when PHP fails; cfg.BootTimeout bounds the run.
func AppConfig(ctx context.Context, cfg Config) ([]byte, error) {
	answer, err := runScript(ctx, cfg, php.AppConfig(), nil)
	if err != nil {
		return answer, fmt.Errorf("%w: %w", ErrAppConfig, err)
	}
	return answer, nil
}

// described is AppConfig's answer as a pool worker gave it, having booted
// the app at appPath (see startPoolWorker): the same answer, the same
// errors.
func described(appPath string, answer []byte) ([]byte, error) {
	if err := answerError(appPath, answer); err != nil {
		return answer, fmt.Errorf("%w: %w", ErrAppConfig, err)
	}
	return answer, nil
}

// Console does one of the console's operations (req, one JSON object:
// exec/php/console.php lists them) through the Laravel app at cfg.AppPath,
// as a worker would run (cfg's php binary, user and environment), and
// returns its answer.
func Console(ctx context.Context, cfg Config, req []byte) ([]byte, error) {
	return runScript(ctx, cfg, php.Console(), req)
}

// runScript runs one of kqueue's PHP scripts, piped into php in the app's
// folder, with input (if any) to read on fd 4, and returns the one JSON
// object it writes on fd 3.
// An answer {"error":…} is returned with that error. The app's own output
// is kept for the error when PHP fails; cfg.BootTimeout bounds the run.
func runScript(ctx context.Context, cfg Config, script, input []byte) ([]byte, error) {
	cfg.PHP = cmp.Or(cfg.PHP, "php")
	cfg.BootTimeout = cmp.Or(cfg.BootTimeout, 60*time.Second)
	ctx, cancel := context.WithTimeout(ctx, cfg.BootTimeout)
	defer cancel()

	ansR, ansW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer ansR.Close()
	var out limitedBuffer
	cmd := osexec.CommandContext(ctx, cfg.PHP)
	cmd.Dir = cfg.AppPath
	cmd.Env = cfg.env()
	cmd.Stdin = bytes.NewReader(script)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.ExtraFiles = []*os.File{ansW} // fd 3
	var inW *os.File
	if input != nil {
		inR, w, err := os.Pipe()
		if err != nil {
			ansW.Close()
			return nil, err
		}
		defer inR.Close()
		inW = w
		cmd.ExtraFiles = append(cmd.ExtraFiles, inR) // fd 4
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cfg.User}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		ansW.Close()
		if inW != nil {
			inW.Close()
		}
		return nil, fmt.Errorf("start %s: %v", cfg.PHP, err)
	}
	ansW.Close()
	if inW != nil {
		go func() {
			inW.Write(input) // a PHP that exits first breaks the pipe: its answer says why
			inW.Close()
		}()
	}
	answer, readErr := io.ReadAll(io.LimitReader(ansR, 64<<20))
	waitErr := cmd.Wait()
	tail := ""
	if s := strings.TrimSpace(out.String()); s != "" {
		tail = ": " + s
	}
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("Laravel app at %s did not boot within %s%s", cfg.AppPath, cfg.BootTimeout, tail)
	case readErr != nil:
		return nil, readErr
	case len(bytes.TrimSpace(answer)) == 0 && waitErr != nil:
		return nil, fmt.Errorf("%s exited while booting the Laravel app at %s (%v)%s", cfg.PHP, cfg.AppPath, waitErr, tail)
	case len(bytes.TrimSpace(answer)) == 0:
		return nil, fmt.Errorf("%s said nothing while booting the Laravel app at %s%s", cfg.PHP, cfg.AppPath, tail)
	}
	return answer, answerError(cfg.AppPath, answer)
}

// answerError is the error one of kqueue's PHP scripts answered with
// ({"error":…}), for the app at appPath; nil for any other answer.
func answerError(appPath string, answer []byte) error {
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(answer, &e); err != nil {
		return fmt.Errorf("bad answer from kqueue's PHP: %v", err)
	}
	if e.Error != "" {
		return fmt.Errorf("Laravel app at %s: %s", appPath, e.Error)
	}
	return nil
}

// limitedBuffer keeps the last 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.b = append(l.b, p...)
	if len(l.b) > 4<<10 {
		l.b = l.b[len(l.b)-4<<10:]
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }
