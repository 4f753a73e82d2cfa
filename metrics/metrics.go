// Package metrics exports kqueue's counters to Prometheus: jobs by queue,
// class and outcome, their runtimes, waits and memory, the queues' depths
// and waits, the pool and its scaling. packaging/monitoring has alert rules
// and a Grafana dashboard built on them.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/kqueue/kqueue/poller"
	"github.com/kqueue/kqueue/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the instruments.
type Metrics struct {
	reg      *prometheus.Registry
	jobs     *prometheus.CounterVec
	duration *prometheus.HistogramVec
	wait     *prometheus.HistogramVec
	memory   *prometheus.GaugeVec

	mu   sync.Mutex
	peak map[[2]string]uint64 // by queue and class: the highest memory seen
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
			Help:    "How long jobs ran, by queue and job class.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"queue", "job"}),
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kqueue_job_wait_seconds",
			Help:    "How long jobs waited from their push to their start (first runs of jobs whose payload says when it was pushed: Laravel 11 and later), by queue and job class.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"queue", "job"}),
		memory: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kqueue_job_memory_peak_bytes",
			Help: "The most memory a job of the class peaked at since kqueue started (resident bytes of its PHP process, or its cgroup's peak when isolated), by queue and job class.",
		}, []string{"queue", "job"}),
		peak: map[[2]string]uint64{},
	}
	m.reg.MustRegister(m.jobs, m.duration, m.wait, m.memory, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if snapshot != nil {
		m.reg.MustRegister(&depths{snapshot: snapshot})
	}
	return m
}

// Observe records one settled job.
func (m *Metrics) Observe(s poller.Settled) {
	m.jobs.WithLabelValues(s.Queue, s.Job, s.Outcome).Inc()
	m.duration.WithLabelValues(s.Queue, s.Job).Observe(s.Duration.Seconds())
	if s.Wait > 0 {
		m.wait.WithLabelValues(s.Queue, s.Job).Observe(s.Wait.Seconds())
	}
	if s.Memory > 0 {
		k := [2]string{s.Queue, s.Job}
		m.mu.Lock()
		if s.Memory > m.peak[k] {
			m.peak[k] = s.Memory
			m.memory.WithLabelValues(s.Queue, s.Job).Set(float64(s.Memory))
		}
		m.mu.Unlock()
	}
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
	waitDesc    = prometheus.NewDesc("kqueue_queue_wait_seconds", "How long a queue's jobs wait now: the longer of its head job's time at the head and its ready jobs × their mean runtime ÷ the workers.", []string{"queue"}, nil)
	alertDesc   = prometheus.NewDesc("kqueue_queue_wait_alert", "1 while a queue's wait is over its alert_wait (from the warning to the recovery), else 0.", []string{"queue"}, nil)
	alertAtDesc = prometheus.NewDesc("kqueue_queue_alert_wait_seconds", "A queue's alert_wait (0: no alert).", []string{"queue"}, nil)
	targetDesc  = prometheus.NewDesc("kqueue_pool_target_workers", "The PHP workers the pool keeps now (a pool that scales moves it between min and max).", nil, nil)
	minDesc     = prometheus.NewDesc("kqueue_pool_min_workers", "The pool's min_workers (its workers, when fixed).", nil, nil)
	maxDesc     = prometheus.NewDesc("kqueue_pool_max_workers", "The pool's max_workers (its workers, when fixed).", nil, nil)
	scaledDesc  = prometheus.NewDesc("kqueue_pool_scale_total", "Times the pool grew (up) or shrank (down).", []string{"direction"}, nil)
	downDesc    = prometheus.NewDesc("kqueue_store_unreachable_seconds", "How long the queues' store (Redis, the database) has not answered; 0 while it does.", nil, nil)
)

func (d *depths) Describe(ch chan<- *prometheus.Desc) {
	ch <- depthDesc
	ch <- runningDesc
	ch <- capDesc
	ch <- workersDesc
	ch <- recycleDesc
	ch <- waitDesc
	ch <- alertDesc
	ch <- alertAtDesc
	ch <- targetDesc
	ch <- minDesc
	ch <- maxDesc
	ch <- scaledDesc
	ch <- downDesc
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
		ch <- prometheus.MustNewConstMetric(waitDesc, prometheus.GaugeValue, q.Wait.Seconds(), q.Name)
		alerting := 0.0
		if q.WaitAlert {
			alerting = 1
		}
		ch <- prometheus.MustNewConstMetric(alertDesc, prometheus.GaugeValue, alerting, q.Name)
		ch <- prometheus.MustNewConstMetric(alertAtDesc, prometheus.GaugeValue, q.AlertWait.Seconds(), q.Name)
	}
	ch <- prometheus.MustNewConstMetric(downDesc, prometheus.GaugeValue, s.Stats.StoreDown.Seconds())
	n := len(s.Workers)
	sc := protocol.Scale{Min: n, Max: n, Target: n}
	if s.Scale != nil {
		sc = *s.Scale
	}
	ch <- prometheus.MustNewConstMetric(targetDesc, prometheus.GaugeValue, float64(sc.Target))
	ch <- prometheus.MustNewConstMetric(minDesc, prometheus.GaugeValue, float64(sc.Min))
	ch <- prometheus.MustNewConstMetric(maxDesc, prometheus.GaugeValue, float64(sc.Max))
	ch <- prometheus.MustNewConstMetric(scaledDesc, prometheus.CounterValue, float64(sc.Ups), "up")
	ch <- prometheus.MustNewConstMetric(scaledDesc, prometheus.CounterValue, float64(sc.Downs), "down")
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
