package main

const usage = `kqueue runs Laravel queue jobs from Laravel's own Redis queues or jobs table.

Usage:
  kqueue run        --config FILE [--stop-when-empty]   poller and dispatcher in one process
  kqueue poller     --config FILE                       the queue side (what kqueue@NAME runs)
  kqueue dispatcher --config FILE                       the execution side (kqueue-dispatcher@NAME)
  kqueue check      --config FILE | NAME                check a config and the app behind it
  kqueue status     --config FILE | NAME [--json]       live counts, queue depths, running jobs, last failures
  kqueue trigger    --config FILE | NAME [--remove]     PostgreSQL jobs table: notify kqueue of each push
  kqueue web        --config FILE | NAME                the console: queues, instances, running and failed jobs
  kqueue version                                        print the version
  kqueue generator DIR                                  write each instance's sandbox drop-in (systemd runs it)

Flags:
  --config FILE       the instance config (default /etc/kqueue/default.toml);
                      instance NAME is the same as --config /etc/kqueue/NAME.toml
  --stop-when-empty   run: exit once no job is ready or running
  --json              status: print the raw JSON
  --log-format FMT    text (default) or json
  --log-level LEVEL   debug, info (default), warn or error
  --cpuprofile FILE   write a Go CPU profile (pprof) of this run to FILE

run and poller stop on SIGTERM or SIGINT: no new jobs are reserved, running
jobs finish (up to job.shutdown_timeout), and kqueue exits 0.
`

// commandHelp is what `kqueue CMD --help` prints, by command.
var commandHelp = map[string]string{
	"run": `Usage: kqueue run --config FILE | NAME [--stop-when-empty]

Runs the poller and the dispatcher in one foreground process: for
development, demos, containers and tests without systemd. SIGTERM or SIGINT
stops it: no new jobs are taken, running jobs finish (up to
job.shutdown_timeout), and it exits 0.

  --stop-when-empty   exit once no job is ready or running, like queue:work's
`,
	"poller": `Usage: kqueue poller --config FILE | NAME

The queue side, as kqueue@NAME.service runs it: reserves jobs from the app's
Redis queues and hands them to the dispatcher at [dispatcher] socket,
reconnecting when the dispatcher restarts.
`,
	"dispatcher": `Usage: kqueue dispatcher --config FILE | NAME

The execution side, as kqueue-dispatcher@NAME.service runs it: boots the
warm pool of PHP workers and serves the poller on [dispatcher] socket (or
the socket systemd passes it). SIGTERM drains it: no more jobs are taken,
the ones it has finish, then it exits.
`,
	"check": `Usage: kqueue check --config FILE | NAME

Checks a config and the app behind it — PHP found, Laravel boots, Redis
reachable, the cgroup driver usable, settings that disagree with the app's
— and says what to fix. Exits non-zero when something must be fixed.
`,
	"trigger": `Usage: kqueue trigger --config FILE | NAME [--remove]

For an app whose queue is Laravel's jobs table on PostgreSQL: installs on
the table a trigger that notifies kqueue of each new job (LISTEN/NOTIFY),
so kqueue picks it up within milliseconds instead of polling for it. It
prints the SQL it runs; kqueue never changes the app's schema on its own.
Running instances notice the trigger when their dispatcher next connects
(restart them, or reload).

  --remove            drop the trigger instead
`,
	"web": `Usage: kqueue web --config FILE | NAME

The console: a web view of the queues, of every kqueue instance sharing
them (each publishes its state in the store), of the running jobs and of
Laravel's failed jobs, with the actions operators need (pause and resume a
queue, queue:restart, retry and forget failed jobs). Under systemd,
kqueue-web@NAME.socket starts it on the first visit; without systemd it
listens on [web] listen (default 127.0.0.1:7380). Without [web] tokens or
user_header it serves only on loopback or a unix socket.
`,
	"status": `Usage: kqueue status --config FILE | NAME [--json]

Live counts of a running instance: queue depths, workers, running jobs,
the last failures. Asks the instance over its [control] socket.

  --json              print the raw JSON
`,
}

// commonFlags is the flags every command takes, for its help.
const commonFlags = `
  --config FILE       the instance config (default /etc/kqueue/default.toml);
                      NAME is the same as --config /etc/kqueue/NAME.toml
  --log-format FMT    text (default) or json
  --log-level LEVEL   debug, info (default), warn or error
  --cpuprofile FILE   write a Go CPU profile (pprof) of this run to FILE
`
