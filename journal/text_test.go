package journal

import (
	"bytes"
	"context"
	"log/slog"
	"math"
	"testing"
	"time"
)

// bothWrite logs r through kqueue's textHandler and slog's TextHandler,
// each given the same WithAttrs and WithGroup first, and returns both.
func bothWrite(t *testing.T, r slog.Record, with []slog.Attr, group string) (ours, slogs string) {
	t.Helper()
	var a, b bytes.Buffer
	lines := newLineBatcher(&a)
	var h, s slog.Handler = newTextHandler(lines, slog.LevelDebug), slog.NewTextHandler(&b, &slog.HandlerOptions{Level: slog.LevelDebug})
	if with != nil {
		h, s = h.WithAttrs(with), s.WithAttrs(with)
	}
	if group != "" {
		h, s = h.WithGroup(group).WithAttrs([]slog.Attr{slog.Int("n", 1)}), s.WithGroup(group).WithAttrs([]slog.Attr{slog.Int("n", 1)})
	}
	if err := h.Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	s.Handle(context.Background(), r)
	lines.Flush()
	return a.String(), b.String()
}

func TestTextHandlerWritesWhatSlogWrites(t *testing.T) {
	at := time.Date(2026, 12, 7, 3, 4, 5, 6_000_789, time.FixedZone("", 3600))
	job := []slog.Attr{
		slog.String("queue", "default"), slog.String("job_uuid", "3f1e5a2c-1b7d-4f0e-9a55-2c1d7e9f0b11"),
		slog.String("job_name", `App\Jobs\Noop`), slog.Int("attempt", 1), slog.String("outcome", "done"),
		slog.Duration("duration", 43*time.Microsecond), slog.String("strategy", "pool"),
	}
	cases := []struct {
		name  string
		level slog.Level
		when  time.Time
		msg   string
		attrs []slog.Attr
		with  []slog.Attr
		group string
	}{
		{name: "a job's line", level: slog.LevelInfo, when: at, msg: "job done", attrs: job, with: []slog.Attr{slog.String("component", "poller")}},
		{name: "no time", level: slog.LevelWarn, msg: "plain", attrs: job[:2]},
		{name: "odd levels", level: slog.LevelError + 2, when: at, msg: "x"},
		{name: "quoting", level: slog.LevelDebug, when: at, msg: "", attrs: []slog.Attr{
			slog.String("empty", ""), slog.String("space", "a b"), slog.String("eq", "a=b"), slog.String("quote", `a"b`),
			slog.String("backslash", `a\b`), slog.String("tab", "a\tb"), slog.String("del", "a\x7fb"), slog.String("nl", "a\nb"),
			slog.String("unicode", "héllo→"), slog.String("nbsp", "a\u00a0b"), slog.String("bad", "a\xffb"), slog.String("key with space", "v"),
			slog.String("ctl", "\x01"), slog.String("zw", "a\u200bb"),
			slog.String("both", `a\b c`), slog.String("path", `C:\Program Files\kqueue`), slog.String("long", "a job that ran long"),
			slog.String("tail", "abcdefgh ijklmn"), slog.String("late", "abcdefghijklm\x01"), slog.String("eight", "abcd=fgh"),
			slog.String("quote8", `abcdefg"`), slog.String("high", "abcdefghé"), slog.String("at8", "abcdefghijklmnop"),
		}},
		{name: "numbers", level: slog.LevelInfo, when: at, msg: "n", attrs: []slog.Attr{
			slog.Int64("neg", -5), slog.Uint64("big", math.MaxUint64), slog.Float64("f", 1.5e-7), slog.Float64("nan", math.NaN()),
			slog.Bool("yes", true), slog.Duration("d", 90*time.Minute+time.Nanosecond), slog.Duration("zero", 0),
		}},
		{name: "kinds left to slog", level: slog.LevelInfo, when: at, msg: "any", attrs: []slog.Attr{
			slog.String("first", "x"), slog.Any("err", context.Canceled), slog.Time("at", at), slog.Group("g", slog.Int("a", 1)),
		}},
		{name: "with attrs left to slog", level: slog.LevelInfo, when: at, msg: "w", attrs: job[:1], with: []slog.Attr{slog.Any("list", []int{1, 2})}},
		{name: "a group", level: slog.LevelInfo, when: at, msg: "g", attrs: job[:2], group: "grp"},
		{name: "empty key", level: slog.LevelInfo, when: at, msg: "k", attrs: []slog.Attr{slog.String("", "v"), slog.Int("", 0)}},
	}
	for _, c := range cases {
		r := slog.NewRecord(c.when, c.level, c.msg, 0)
		r.AddAttrs(c.attrs...)
		ours, slogs := bothWrite(t, r, c.with, c.group)
		if ours != slogs {
			t.Errorf("%s:\n ours %q\n slog %q", c.name, ours, slogs)
		}
	}
}

// A time is written once a millisecond and reused: lines of the same
// millisecond, of the next, and of the same instant in another zone.
func TestTextHandlerTimeOncePerMillisecond(t *testing.T) {
	var a, b bytes.Buffer
	lines := newLineBatcher(&a)
	h, s := newTextHandler(lines, slog.LevelInfo), slog.NewTextHandler(&b, nil)
	at := time.Date(2026, 12, 7, 3, 4, 5, 6_000_789, time.UTC)
	for _, when := range []time.Time{at, at.Add(300 * time.Microsecond), at.Add(time.Millisecond),
		at.In(time.FixedZone("", 3600)), at.Add(999 * time.Microsecond), at.Add(-time.Hour)} {
		r := slog.NewRecord(when, slog.LevelInfo, "m", 0)
		h.Handle(context.Background(), r)
		s.Handle(context.Background(), r)
	}
	lines.Flush()
	if a.String() != b.String() {
		t.Errorf("\n ours %q\n slog %q", a.String(), b.String())
	}
}

func FuzzTextHandlerWritesWhatSlogWrites(f *testing.F) {
	f.Add("job done", "queue", "default", int64(3), int64(1500))
	f.Add("", "", "a b=c\"d\\e\x00\u00a0\xff", int64(-1), int64(0))
	f.Fuzz(func(t *testing.T, msg, key, value string, n, d int64) {
		r := slog.NewRecord(time.Unix(0, d*1e6), slog.LevelInfo, msg, 0)
		r.AddAttrs(slog.String(key, value), slog.Int64("n", n), slog.Duration(value, time.Duration(d)))
		if ours, slogs := bothWrite(t, r, []slog.Attr{slog.String(value, key)}, ""); ours != slogs {
			t.Errorf("\n ours %q\n slog %q", ours, slogs)
		}
	})
}
