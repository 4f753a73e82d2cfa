package exec

import (
	"context"
	"encoding/json"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/internal/testenv"
	"github.com/kqueue/kqueue/payload"
	"github.com/kqueue/kqueue/protocol"
)

func ptr[T any](v T) *T { return &v }

func TestChoose(t *testing.T) {
	t.Parallel()
	defaults := cgroup.Limits{Memory: 512 << 20, Tasks: 256}
	rules := []Rule{
		{Class: `App\Jobs\Video*`, Strategy: "isolated", Limits: cgroup.Limits{Memory: 2 << 30, CPU: 100}, Timeout: 10 * time.Minute},
		{Queue: "reports", Strategy: "isolated"},
		{Class: `App\Jobs\Trusted*`, Strategy: "inline"},
	}
	for _, tc := range []struct {
		name, queue, class string
		hints              Hints
		want               string
	}{
		{"no hint runs inline", "default", `App\Jobs\Mail`, Hints{}, "inline"},
		{"$isolated", "default", `App\Jobs\Mail`, Hints{Isolated: ptr(true)}, "isolated (memory 512M, tasks 256)"},
		{"$isolated with $maxMemory", "default", `App\Jobs\Mail`, Hints{Isolated: ptr(true), MaxMemory: ptr(int64(64))}, "isolated (memory 64M, tasks 256)"},
		{"$maxMemory alone isolates", "default", `App\Jobs\Mail`, Hints{MaxMemory: ptr(int64(64))}, "isolated (memory 64M, tasks 256)"},
		{"$cpu", "default", `App\Jobs\Mail`, Hints{Isolated: ptr(true), CPU: ptr(int64(20))}, "isolated (memory 512M, cpu 20%, tasks 256)"},
		{"class rule", "default", `App\Jobs\VideoEncode`, Hints{}, "isolated (memory 2G, cpu 100%, tasks 256)"},
		{"job beats rule", "default", `App\Jobs\VideoEncode`, Hints{Isolated: ptr(false)}, "inline"},
		{"job limit beats rule limit", "default", `App\Jobs\VideoEncode`, Hints{MaxMemory: ptr(int64(100))}, "isolated (memory 100M, cpu 100%, tasks 256)"},
		{"queue rule", "reports", `App\Jobs\Mail`, Hints{}, "isolated (memory 512M, tasks 256)"},
		{"inline rule", "reports", `App\Jobs\TrustedThing`, Hints{}, "isolated (memory 512M, tasks 256)"}, // first match wins: the queue rule
		{"inline rule elsewhere", "default", `App\Jobs\TrustedThing`, Hints{}, "inline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := choose(tc.queue, tc.class, tc.hints, rules, defaults)
			if s.String() != tc.want {
				t.Errorf("got %s (%s), want %s", s, s.Why, tc.want)
			}
		})
	}
	if s := choose("default", `App\Jobs\VideoX`, Hints{}, rules, defaults); s.Timeout == nil || *s.Timeout != 10*time.Minute {
		t.Errorf("rule timeout not applied: %+v", s)
	}
}

// Laravel 8 serializes every property; Laravel 10+ only those off their
// declared defaults, so the class defaults fill in.
func TestHintsFromCommand(t *testing.T) {
	t.Parallel()
	l8 := "O:12:\"App\\Jobs\\Hog\":3:{s:8:\"isolated\";b:1;s:12:\"\x00*\x00maxMemory\";i:64;s:3:\"tag\";s:1:\"x\";}"
	l10 := "O:12:\"App\\Jobs\\Hog\":1:{s:3:\"tag\";s:1:\"x\";}"
	classDefaults := Hints{Isolated: ptr(true), MaxMemory: ptr(int64(64))}
	for _, cmd := range []string{l8, l10} {
		o, err := payload.ReadCommand([]byte(cmd))
		if err != nil {
			t.Fatal(err)
		}
		h, _ := hintsFrom(o)
		s := choose("default", o.Class, h.merge(classDefaults), nil, cgroup.Limits{Tasks: 64})
		if s.String() != "isolated (memory 64M, tasks 64)" {
			t.Errorf("%q: %s", cmd, s)
		}
	}
}

// A protected or private property's name holds NULs, which the payload's
// JSON writes \u0000: a hint so named is still read from the payload, and
// a job whose command has none is not unquoted to find that out.
func TestJobHintsBesideEscapedNames(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		command string
		want    Hints
	}{
		{"O:12:\"App\\Jobs\\Hog\":2:{s:12:\"\x00*\x00maxMemory\";i:64;s:8:\"\x00*\x00order\";i:5;}", Hints{MaxMemory: ptr(int64(64))}},
		{"O:12:\"App\\Jobs\\Hog\":1:{s:8:\"\x00*\x00order\";i:5;}", Hints{}},
	} {
		raw, err := json.Marshal(map[string]any{"uuid": "u", "job": "j", "attempts": 0, "data": map[string]string{"command": c.command}})
		if err != nil {
			t.Fatal(err)
		}
		p, err := payload.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(raw), `\u0000`) {
			t.Fatalf("%s: the JSON has no \\u escape", raw)
		}
		h, ok := jobHints(p, func(string) (Hints, bool) { return Hints{}, true })
		if !ok || !reflect.DeepEqual(h, c.want) {
			t.Errorf("%q: hints %+v, want %+v", c.command, h, c.want)
		}
		if c.want == (Hints{}) && p.CommandMayContain(hintProbe) {
			t.Errorf("%q: CommandMayContain of the hint names: true, want false", c.command)
		}
	}
}

// libraryEnv points the fixture app at the kqueue PHP library in this
// repository (the app loads it from $KQUEUE_PHP_LIBRARY).
func libraryEnv(c *Config) {
	c.Env["KQUEUE_PHP_LIBRARY"] = filepath.Join(testenv.Root(), "php-library", "src")
}

// laravel10Form rewrites a Laravel 8 payload the way Laravel 10+ would have
// written it for a job dispatched with its declared defaults: without the
// properties that choose the strategy in the serialized command, so that
// kqueue must learn them from the class.
func laravel10Form(t *testing.T, raw string) string {
	t.Helper()
	var p map[string]any
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&p); err != nil {
		t.Fatal(err)
	}
	data := p["data"].(map[string]any)
	cmd := data["command"].(string)
	n := len(strategyProps.FindAllStringIndex(cmd, -1))
	cmd = strategyProps.ReplaceAllString(cmd, "")
	head := objectHead.FindStringSubmatch(cmd)
	count, _ := strconv.Atoi(head[2])
	data["command"] = head[1] + strconv.Itoa(count-n) + cmd[len(head[0])-2:] // from ":{"
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	strategyProps = regexp.MustCompile(`s:\d+:"(isolated|maxMemory|cpu|timeout)";(b:[01]|i:-?\d+|N);`)
	objectHead    = regexp.MustCompile(`^(O:\d+:"[^"]+":)(\d+):\{`)
)

// Jobs that say how they run with plain properties and the same jobs
// written on the library's KQueueJob run the same way, dispatched by the
// real app and run by the real pool — in Laravel 8's payloads, which hold
// every property, and in Laravel 10+'s, which leave the declared defaults
// for kqueue to read from the class. KQueueJob's defaults leave the choice
// to the config: a rule isolates the jobs that say nothing.
func TestBothWaysPickTheSameStrategy(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, func(c *Config) {
		libraryEnv(c)
		c.Isolation = &Isolation{Driver: cgroup.None{}, Limits: cgroup.Limits{Memory: 256 << 20, Tasks: 64}}
		c.Rules = []Rule{{Class: `App\Jobs\*Unsaid`, Strategy: "isolated", Limits: cgroup.Limits{Memory: 128 << 20}}}
	})
	payloads := h.dispatch("both-ways")
	want := map[string]string{
		"Limits":      "isolated (memory 96M, cpu 50%, tasks 64)",
		"Unsaid":      "isolated (memory 128M, tasks 64)",
		"MustIsolate": "isolated (memory 256M, tasks 64)",
	}
	for i, kind := range []string{"Limits", "Unsaid", "MustIsolate"} {
		plain, based := payloads[2*i], payloads[2*i+1]
		for _, form := range []struct {
			name         string
			plain, based string
		}{
			{"laravel 8", plain, based},
			{"laravel 10", laravel10Form(t, plain), laravel10Form(t, based)},
		} {
			var got [2]string
			var timeout [2]*time.Duration
			for j, raw := range []string{form.plain, form.based} {
				p, err := payload.Parse([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				o := h.run(raw)
				if o.Kind != protocol.Delete || o.Failed {
					t.Fatalf("%s %s: outcome %+v\n%s", form.name, p.CommandName, o, h.logs.String())
				}
				got[j], timeout[j] = o.Strategy, p.Timeout
			}
			if got[0] != got[1] {
				t.Errorf("%s %s: plain job runs %s, KQueueJob %s", form.name, kind, got[0], got[1])
			}
			if w, ok := want[kind]; ok && got[1] != w {
				t.Errorf("%s %s: runs %s, want %s", form.name, kind, got[1], w)
			}
			if (timeout[0] == nil) != (timeout[1] == nil) || timeout[0] != nil && *timeout[0] != *timeout[1] {
				t.Errorf("%s %s: timeouts %v and %v differ", form.name, kind, timeout[0], timeout[1])
			}
		}
	}
	if runs := h.app.Redis.Client.HGetAll(context.Background(), testenv.Prefix+"kqtest:runs").Val(); len(runs) != 6 {
		t.Errorf("runs %v, want each of the 6 jobs", runs)
	}
}

// A job whose class implements ShouldBeIsolated carries the library's mark
// in its payload, so kqueue isolates it without asking PHP, even when its
// own $isolated says false; its limits come as usual.
func TestShouldBeIsolatedMark(t *testing.T) {
	t.Parallel()
	h := newHarness(t, 1, libraryEnv)
	noDefaults := func(string) (Hints, bool) { return Hints{}, true }
	for _, raw := range h.dispatch("both-ways") {
		p, err := payload.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		hints, _ := jobHints(p, noDefaults)
		s := choose("default", p.CommandName, hints, nil, cgroup.Limits{Memory: 256 << 20})
		marked := strings.HasSuffix(p.CommandName, "MustIsolate")
		if hints.MustIsolate != marked || strings.Contains(raw, `"kqueue"`) != marked {
			t.Errorf("%s: marked %v in %s", p.CommandName, hints.MustIsolate, raw)
		}
		if marked && (s.String() != "isolated (memory 256M)" || s.Why != "job ShouldBeIsolated") {
			t.Errorf("%s: %s (%s), want isolated by ShouldBeIsolated", p.CommandName, s, s.Why)
		}
	}
}
