package bench

import (
	"context"
	"fmt"
	"os/exec"
	"testing"

	"github.com/kqueue/kqueue/internal/testenv"
)

// sqsJobs is how many no-op jobs one SQS measurement runs: the tests' SQS
// server (moto, in Python) takes 4 ms and more per call, the more the
// longer its queue.
const sqsJobs = 300

// BenchmarkSQS runs no-op jobs from an SQS queue on the tests' SQS server,
// through queue:work (Laravel's SqsQueue and SqsJob, on the fixture app's
// stand-in for the AWS SDK's client) and through kqueue run with as many
// PHP processes; and the pickup latency of each on an idle queue. The
// server is the bottleneck of both: the ratio says how many calls each
// runner makes per job more than how fast it runs.
func BenchmarkSQS(b *testing.B) {
	app := benchApp(b)
	s := testenv.StartSQS(b)
	app.QueueOnSQS(b, s, map[string]string{"VisibilityTimeout": "60"})
	left := func() int64 { return int64(s.Left(b, s.URL("default"))) }
	for _, workers := range []int{1, 2} {
		b.Run(fmt.Sprintf("runner=queue:work/php=%d", workers), func(b *testing.B) {
			measureLeft(b, app, left, false, sqsJobs, fmt.Sprintf("sqs/throughput/queue:work/%d", workers), func() {}, func(ctx context.Context) error {
				return together(workers, func(int) error {
					return app.Command(ctx, "queue:work", "--stop-when-empty").Run()
				})
			})
		})
		b.Run(fmt.Sprintf("runner=kqueue/php=%d", workers), func(b *testing.B) {
			cfg := app.Config(b, workers, "")
			measureLeft(b, app, left, false, sqsJobs, fmt.Sprintf("sqs/throughput/kqueue/%d", workers), func() {}, kqueueRun(cfg))
		})
	}
	cfg := app.Config(b, 1, "")
	b.Run("pickup/runner=queue:work", func(b *testing.B) {
		pickup(b, app, func(ctx context.Context) *exec.Cmd { return app.Command(ctx, "queue:work") }, "sqs/pickup/queue:work")
	})
	b.Run("pickup/runner=kqueue", func(b *testing.B) {
		pickup(b, app, func(ctx context.Context) *exec.Cmd {
			return exec.CommandContext(ctx, kqueueBin, "run", "--config", cfg)
		}, "sqs/pickup/kqueue")
	})
}
