// Package metrics exports kqueue's counters to Prometheus: jobs by queue,
// class and outcome, their durations, queue depths and running jobs.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/kqueue/kqueue/poller"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the instruments.
type Metrics struct {
	reg      *prometheus.Registry
	jobs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// New makes the instruments; snapshot reads queue depths and running jobs
// at scrape time (nil: none).
func New(snapshot func(context.Context) (poller.Snapshot, error)) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kqueue_jobs_total",
			Help: "Jobs settled, by queue, job class and outcome (done, failed, released, timeout, crashed, oom, kept).",
		}, []string{"queue", "job", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kqueue_job_duration_seconds",
			Help:    "How long jobs ran, by queue.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"queue"}),
	}
	m.reg.MustRegister(m.jobs, m.duration, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if snapshot != nil {
		m.reg.MustRegister(&depths{snapshot: snapshot})
	}
	return m
}

// Observe records one settled job.
func (m *Metrics) Observe(queue, job, outcome string, d time.Duration) {
	m.jobs.WithLabelValues(queue, job, outcome).Inc()
	m.duration.WithLabelValues(queue).Observe(d.Seconds())
}

// Serve serves /metrics on addr until ctx is done.
func (m *Metrics) Serve(ctx context.Context, addr string) (net.Addr, func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return
		}
	}()
	stop := func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
	}
	return ln.Addr(), stop, nil
}

// depths reads queue depths and running jobs when scraped.
type depths struct {
	snapshot func(context.Context) (poller.Snapshot, error)
}

var (
	depthDesc   = prometheus.NewDesc("kqueue_queue_jobs", "Jobs in a queue's Redis keys, by state (ready, delayed, reserved).", []string{"queue", "state"}, nil)
	runningDesc = prometheus.NewDesc("kqueue_running_jobs", "Jobs handed to the dispatcher and not yet settled.", nil, nil)
	capDesc     = prometheus.NewDesc("kqueue_capacity", "Jobs the dispatcher can take at once.", nil, nil)
	workersDesc = prometheus.NewDesc("kqueue_pool_workers", "Warm PHP workers, by state (busy, idle).", []string{"state"}, nil)
	recycleDesc = prometheus.NewDesc("kqueue_worker_recycles_total", "PHP workers replaced, by reason (max_jobs, max_memory, max_lifetime, reload, restart, timeout, crash, exited).", []string{"reason"}, nil)
)

func (d *depths) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- runningDesc
	ch <- capDesc
	ch <- workersDesc
	ch <- recycleDesc
}

func (d *depths) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := d.snapshot(ctx)
	if err != nil {
		return
	}
	for _, q := range s.Queues {
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(q.Ready), q.Name, "ready")
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(q.Delayed), q.Name, "delayed")
		ch <- prometheus.MustNewConstMetric(depthDesc, prometheus.GaugeValue, float64(q.Reserved), q.Name, "reserved")
	}
	ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(s.Stats.Running))
	ch <- prometheus.MustNewConstMetric(capDesc, prometheus.GaugeValue, float64(s.Stats.Capacity))
	states := map[string]int{"busy": 0, "idle": 0}
	for _, w := range s.Workers {
		states[w.State]++
	}
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(workersDesc, prometheus.GaugeValue, float64(n), state)
	}
	for reason, n := range s.Recycles {
		ch <- prometheus.MustNewConstMetric(recycleDesc, prometheus.CounterValue, float64(n), reason)
	}
}
