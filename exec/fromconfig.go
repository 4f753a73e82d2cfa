package exec

import (
	"context"

	"github.com/kqueue/kqueue/cgroup"
	"github.com/kqueue/kqueue/config"
)

// FromConfig is the dispatcher's part of an instance's config. driver may
// be nil: then every job runs inline.
func FromConfig(cfg *config.Config, driver cgroup.Driver) Config {
	var rules []Rule
	for _, r := range cfg.Rules {
		rules = append(rules, Rule{
			Class: r.Class, Queue: r.Queue, Strategy: r.Strategy, Timeout: r.Timeout.D(),
			Limits: cgroup.Limits{Memory: r.Memory.Bytes(), CPU: r.CPU, Tasks: r.Tasks},
		})
	}
	var iso *Isolation
	if driver != nil {
		iso = &Isolation{
			Driver:        driver,
			MaxConcurrent: cfg.Isolation.MaxConcurrent,
			Fresh:         cfg.Isolation.Fresh,
			Limits:        cgroup.Limits{Memory: cfg.Isolation.Memory.Bytes(), CPU: cfg.Isolation.CPU, Tasks: cfg.Isolation.Tasks},
		}
	}
	var queues []string
	for _, q := range cfg.Queues {
		queues = append(queues, q.Name)
	}
	return Config{
		Queues:          queues,
		Force:           cfg.Job.Force,
		NoPrefetch:      cfg.Laravel != nil && cfg.Laravel.SQS != nil,
		User:            cfg.App.Credential(),
		Isolation:       iso,
		Rules:           rules,
		AppPath:         cfg.App.Path,
		PHP:             cfg.App.PHP,
		Connection:      cfg.App.Connection,
		Env:             cfg.App.Env,
		Workers:         cfg.Pool.Workers,
		MaxWorkers:      cfg.Pool.MaxWorkers,
		ScaleCooldown:   cfg.Pool.ScaleCooldown.D(),
		MemoryBudget:    cfg.Pool.MemoryBudget.Bytes(),
		ScaleMaxCPU:     float64(cfg.Pool.ScaleMaxCPU) / 100,
		MaxJobs:         cfg.Pool.MaxJobs,
		MaxMemory:       cfg.Pool.MaxMemory.Bytes(),
		MaxLifetime:     cfg.Pool.MaxLifetime.D(),
		Nice:            cfg.Pool.Nice,
		Timeout:         cfg.Job.Timeout.D(),
		ShutdownTimeout: cfg.Job.ShutdownTimeout.D(),
		Tries:           *cfg.Job.Tries,
		Backoff:         cfg.Job.Backoff,
	}
}

// ReadApp completes cfg with the app's own queue configuration: one PHP
// run that boots the app (~100–200 ms). kqueue.toml's own values win; the
// notes say what came from the app and where the two disagree.
func ReadApp(ctx context.Context, cfg *config.Config) ([]config.Note, error) {
	answer, err := AppConfig(ctx, FromConfig(cfg, nil))
	if err != nil {
		return nil, err
	}
	l, err := config.ParseLaravel(answer)
	if err != nil {
		return nil, err
	}
	return cfg.Adopt(l)
}
