package exec

import (
	"testing"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/payload"
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
