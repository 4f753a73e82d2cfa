package journal

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkJobLine logs the line the poller logs for each job done, as it
// does (a record of nine attributes handed to the handler), as text lines
// and as native journal entries.
func BenchmarkJobLine(b *testing.B) {
	b.Run("text", func(b *testing.B) {
		lines := newLineBatcher(io.Discard)
		logJobs(b, newTextHandler(lines, slog.LevelInfo))
		lines.Flush()
	})
	b.Run("journal", func(b *testing.B) {
		h, srv := fakeJournald(b)
		go func() {
			buf := make([]byte, 65536)
			for {
				if _, err := srv.Read(buf); err != nil {
					return
				}
			}
		}()
		logJobs(b, h)
	})
}

func logJobs(b *testing.B, h slog.Handler) {
	h = h.WithAttrs([]slog.Attr{slog.String("component", "poller")})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		attrs := make([]slog.Attr, 0, 12)
		attrs = append(attrs,
			slog.String("queue", "default"), slog.String("job_uuid", "3f1e5a2c-1b7d-4f0e-9a55-2c1d7e9f0b11"),
			slog.String("job_name", `App\Jobs\Noop`), slog.Int("attempt", 1), slog.String("outcome", "done"),
			slog.Duration("duration", 43*time.Microsecond), slog.String("strategy", "pool"),
			slog.Uint64("peak_memory", 2<<20), slog.Duration("cpu", 31*time.Microsecond))
		rec := slog.NewRecord(time.Now(), slog.LevelInfo, "job done", 0)
		rec.AddAttrs(attrs...)
		if err := h.Handle(ctx, rec); err != nil {
			b.Fatal(err)
		}
	}
}
