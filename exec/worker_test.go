package exec

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/exec/php"
	"github.com/kqueue/kqueue/internal/testenv"
)

// A request's header decodes to the request, whichever way it was written;
// the plain run header is byte for byte what encoding/json writes.
func TestRequestHeader(t *testing.T) {
	for _, req := range []request{
		{Op: "run", Queue: "default", Len: 612},
		{Op: "run", Queue: "default", Len: 612, Timeout: 90},
		{Op: "run", Queue: "{emails}", Len: 0},
		{Op: "run", Queue: `we"ird\q`, Len: 1},
		{Op: "run", Queue: "ünïcode<&>", Len: 2},
		{Op: "run", Queue: "tab\there", Len: 3},
		{Op: "fail", Queue: "default", Len: 4, Kind: "timeout", Reason: "took \"too\" long"},
		{Op: "defaults", Class: `App\Jobs\Noop`},
	} {
		hdr := req.appendHeader(nil)
		var got request
		if err := json.Unmarshal(hdr, &got); err != nil || got != req {
			t.Errorf("%s decodes to %+v (%v), want %+v", hdr, got, err, req)
		}
		if want, _ := json.Marshal(req); plainJSON(req.Queue) && !bytes.Equal(hdr, want) {
			t.Errorf("header %s, encoding/json writes %s", hdr, want)
		}
	}
}

// A job that simply succeeds is answered with doneOK and its duration,
// which the daemon recognises without decoding it: worker.php writes that
// answer from a constant, so the two must not drift apart. (Were they to,
// every job would still work, through encoding/json, only slower.)
func TestPlainSuccessIsDoneOK(t *testing.T) {
	app := testenv.NewApp(t, testenv.StartRedis(t))
	app.Artisan(t, "kq:dispatch", "noop")
	payload := app.Redis.Client.LPop(context.Background(), testenv.Prefix+"queues:default").Val()
	script, err := php.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reqR, reqW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{AppPath: app.Path, Env: app.Env, Tries: 1}
	cmd := osexec.Command("php", script)
	cmd.Dir, cmd.Env, cmd.Stderr = app.Path, cfg.env(), os.Stderr
	cmd.ExtraFiles = []*os.File{reqR, resW} // fd 3, fd 4
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	reqR.Close()
	resW.Close()
	defer resR.Close()

	req := append(request{Op: "run", Queue: "default", Len: len(payload)}.appendHeader(nil), '\n')
	if _, err := reqW.Write(append(req, payload...)); err != nil {
		t.Fatal(err)
	}
	reqW.Close() // EOF: the worker ends after this job
	br := bufio.NewReader(resR)
	ready, _ := br.ReadBytes('\n')
	start, _ := br.ReadBytes('\n')
	answer, _ := br.ReadBytes('\n')
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker.php: %v (ready: %s)", err, ready)
	}
	if !bytes.Equal(start, began) {
		t.Errorf("a job about to run is announced\n%s, want began\n%s", start, began)
	}
	if us, ok := doneOKTook(answer); !ok || us <= 0 {
		t.Errorf("a no-op job is answered\n%s, want doneOK and its duration\n%s", answer, doneOK)
	}
	for _, line := range []string{`1}`, `}`, `x}`, `12`, `1}` + "\n" + `x`} {
		if _, ok := doneOKTook(append(doneOK[:len(doneOK):len(doneOK)], line...)); ok {
			t.Errorf("doneOK ending %q read as a plain success", line)
		}
	}
}

// A pool worker stores "began" (its run's number) in shared memory when
// PHP can map it (FFI), and writes it to fd 5 when it cannot (here
// ffi.enable is off); the daemon reads the number either way.
func TestPoolWorkerSaysBegan(t *testing.T) {
	app := testenv.NewApp(t, testenv.StartRedis(t))
	app.Artisan(t, "kq:dispatch", "noop", "--count=2")
	payloads := app.Redis.Client.LRange(context.Background(), testenv.Prefix+"queues:default", 0, -1).Val()
	script, err := php.Install(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, ffi := range []bool{true, false} {
		t.Run(fmt.Sprint("ffi=", ffi), func(t *testing.T) {
			env := maps.Clone(app.Env)
			if !ffi {
				dir := t.TempDir()
				if err := os.WriteFile(filepath.Join(dir, "ffi.ini"), []byte("ffi.enable = 0\n"), 0o644); err != nil {
					t.Fatal(err)
				}
				env["PHP_INI_SCAN_DIR"] = ":" + dir // PHP's own configuration, then this
			}
			cfg := &Config{PHP: "php", AppPath: app.Path, Env: env, Tries: 1, BootTimeout: time.Minute}
			w, err := startPoolWorker(context.Background(), cfg, script, testenv.NewLogs().Logger(), false)
			if err != nil {
				t.Fatal(err)
			}
			defer w.kill()
			if w.beganAt == nil {
				t.Fatal("no shared memory for began")
			}
			for _, p := range payloads {
				req := request{Op: "run", Queue: "default", Len: len(p)}
				if rep := w.do(req, []byte(p), time.Time{}, nil, nil); !rep.ok || rep.msg.Error != "" {
					t.Fatalf("run: %+v", rep)
				}
			}
			w.readBeganPipe()
			piped, mapped := w.begun, w.beganAt.Load()
			if want := uint64(len(payloads)); ffi && (mapped != want || piped != 0) || !ffi && (piped != want || mapped != 0) {
				t.Errorf("began %d in shared memory and %d on fd 5, want %d in %s", mapped, piped, want, map[bool]string{true: "shared memory", false: "fd 5"}[ffi])
			}
			w.readBegan()
			if w.begun != uint64(len(payloads)) {
				t.Errorf("the daemon read run %d began, want %d", w.begun, len(payloads))
			}
		})
	}
}

// A line longer than the output reader's buffer (16 bytes here) is cut
// with its length, a character not cut in two; one that only its line
// break made longer is not cut.
func TestLongLine(t *testing.T) {
	for in, want := range map[string]string{
		"0123456789abcdef\n":      "0123456789abcdef",
		"0123456789abcde\r\n":     "0123456789abcde",
		"0123456789abcdef":        "0123456789abcdef",
		"0123456789abcdefXYZ\n":   "0123456789abcdef… (cut: a line of 19 bytes)",
		"0123456789abcdefXYZ\r\n": "0123456789abcdef… (cut: a line of 19 bytes)",
		"0123456789abcdefXY":      "0123456789abcdef… (cut: a line of 18 bytes)",
		"0123456789abcdeé!\n":     "0123456789abcde… (cut: a line of 18 bytes)",
		"0123456789abcdef" + string(bytes.Repeat([]byte("x"), 100)) + "\nnext\n": "0123456789abcdef… (cut: a line of 116 bytes)",
	} {
		br := bufio.NewReaderSize(strings.NewReader(in), 16)
		head, err := br.ReadSlice('\n')
		if err != bufio.ErrBufferFull {
			t.Fatalf("%q: %v, want a full buffer", in, err)
		}
		if got, _ := longLine(br, string(head)); got != want {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
		if rest, _ := br.ReadString('\n'); strings.Contains(in, "next") && rest != "next\n" {
			t.Errorf("%q: then %q, want the next line", in, rest)
		}
	}
}
