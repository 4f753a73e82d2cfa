package exec

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/payload"
)

// Strategy is how one job runs.
type Strategy struct {
	Isolated bool
	Limits   cgroup.Limits  // for isolated jobs
	Timeout  *time.Duration // from a rule, when the payload has none
	Why      string         // where the choice came from, for the log
}

func (s Strategy) String() string {
	if !s.Isolated {
		return "inline"
	}
	return "isolated (" + s.Limits.String() + ")"
}

// Rule chooses how matching jobs run (config [[rule]]).
type Rule struct {
	Class    string // glob on the job class; "" matches any
	Queue    string // "" matches any
	Strategy string // "inline", "isolated" or "" (limits only)
	Limits   cgroup.Limits
	Timeout  time.Duration
}

func (r Rule) matches(queue, class string) bool {
	if r.Queue != "" && r.Queue != queue {
		return false
	}
	if r.Class == "" {
		return true
	}
	// Class names are full of backslashes, which path.Match reads as
	// escapes: take them literally.
	ok, _ := path.Match(strings.ReplaceAll(r.Class, `\`, `\\`), class)
	return ok
}

// Hints are what a job says about itself: its class's properties
// $isolated, $maxMemory (MB) and $cpu (percent), from the serialized
// command or else the class's declared defaults (nil: not said); and
// whether its class implements KQueue\Contracts\ShouldBeIsolated, which
// the kqueue PHP library writes into the payload.
type Hints struct {
	Isolated  *bool
	MaxMemory *int64
	CPU       *int64
	// MustIsolate: the job runs isolated whatever $isolated and the rules
	// say; its limits are chosen as usual.
	MustIsolate bool
}

// jobHints gathers everything a job says about how it runs: the payload's
// mark, the properties its serialized command holds, and for those Laravel
// 10+ left out at their declared defaults, the class's defaults, which
// classDefaults asks of PHP (ok false: the worker asked died).
func jobHints(p *payload.Payload, classDefaults func(class string) (Hints, bool)) (h Hints, ok bool) {
	var known map[string]bool
	if p.CommandMayContain(hintProbe) {
		if c := p.Command(); strings.HasPrefix(c, "O:") && slices.ContainsFunc(hintNames, func(s string) bool { return strings.Contains(c, s) }) {
			if o, err := payload.ReadCommand([]byte(c)); err == nil {
				h, known = hintsFrom(o)
			}
		}
	}
	if p.CommandName != "" && len(known) < 3 {
		d, ok := classDefaults(p.CommandName)
		if !ok {
			return Hints{}, false
		}
		h = h.merge(d)
	}
	h.MustIsolate = h.MustIsolate || p.MarkedIsolated
	return h, true
}

// hintNames are the properties hintsFrom reads as a serialized command
// names them: a string ending `NAME";`, public or not. A command without
// any of them is not worth reading.
var hintNames = []string{`isolated";`, `maxMemory";`, `cpu";`}

// hintProbe looks for hintNames in a payload without unquoting its command.
var hintProbe = payload.NewProbe(hintNames...)

// hintsFrom reads the hints a serialized command carries. Laravel 10+
// leaves out properties at their declared defaults: known tells which
// were present.
func hintsFrom(o *payload.Object) (h Hints, known map[string]bool) {
	known = map[string]bool{}
	for _, name := range []string{"isolated", "maxMemory", "cpu"} {
		if v, ok := o.Props[name]; ok {
			known[name] = true
			h.set(name, v)
		}
	}
	return h, known
}

// set records one property's value: a bool or a number (int64 from PHP's
// serialize format, float64 from JSON). Other values are ignored.
func (h *Hints) set(name string, v any) {
	var n int64
	switch x := v.(type) {
	case bool:
		if name == "isolated" {
			h.Isolated = &x
		}
		return
	case int64:
		n = x
	case float64:
		n = int64(x)
	default:
		return
	}
	switch name {
	case "maxMemory":
		h.MaxMemory = &n
	case "cpu":
		h.CPU = &n
	case "isolated":
		b := n != 0
		h.Isolated = &b
	}
}

// merge fills what h does not say from d (the class's defaults).
func (h Hints) merge(d Hints) Hints {
	if h.Isolated == nil {
		h.Isolated = d.Isolated
	}
	if h.MaxMemory == nil {
		h.MaxMemory = d.MaxMemory
	}
	if h.CPU == nil {
		h.CPU = d.CPU
	}
	h.MustIsolate = h.MustIsolate || d.MustIsolate
	return h
}

// choose picks a job's strategy: the job's own hints first, then the
// first matching rule, then the isolation defaults. A job with no hint and
// no rule runs inline.
func choose(queue, class string, h Hints, rules []Rule, defaults cgroup.Limits) Strategy {
	s := Strategy{Limits: defaults, Why: "default"}
	for _, r := range rules {
		if !r.matches(queue, class) {
			continue
		}
		s.Why = fmt.Sprintf("rule class=%q queue=%q", r.Class, r.Queue)
		s.Isolated = r.Strategy == "isolated"
		if r.Limits.Memory > 0 {
			s.Limits.Memory = r.Limits.Memory
		}
		if r.Limits.CPU > 0 {
			s.Limits.CPU = r.Limits.CPU
		}
		if r.Limits.Tasks > 0 {
			s.Limits.Tasks = r.Limits.Tasks
		}
		if r.Timeout > 0 {
			t := r.Timeout
			s.Timeout = &t
		}
		break
	}
	var said []string
	if h.MaxMemory != nil && *h.MaxMemory > 0 {
		s.Limits.Memory = *h.MaxMemory << 20
		said = append(said, "$maxMemory")
	}
	if h.CPU != nil && *h.CPU > 0 {
		s.Limits.CPU = int(*h.CPU)
		said = append(said, "$cpu")
	}
	switch {
	case h.MustIsolate:
		s.Isolated = true
		said = append([]string{"ShouldBeIsolated"}, said...)
	case h.Isolated != nil:
		s.Isolated = *h.Isolated
		said = append([]string{"$isolated"}, said...)
	case len(said) > 0:
		s.Isolated = true // a limit only an isolated job can have
	}
	if len(said) > 0 {
		s.Why = "job " + strings.Join(said, ", ")
	}
	return s
}
