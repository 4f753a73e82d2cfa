<?php

// kqueue's PHP worker. It boots one Laravel app once, then runs the jobs the
// kqueue dispatcher hands it through Laravel's own Worker::process, so tries,
// backoff, maxExceptions, retryUntil, failed(), events, chains, unique locks
// and the failed_jobs row behave exactly as under `php artisan queue:work`.
// The only difference: the job object records delete/release/fail instead of
// touching Redis, and the dispatcher applies them.
//
// Protocol (the job's own output never shares a channel with it):
//   fd 3, dispatcher → worker: a JSON header line, then header.len bytes of
//         the job's original payload.
//         {"op":"run","queue":"default","len":N,"timeout":S}   (timeout: the job's, in s; absent: none)
//         {"op":"fail","queue":"default","len":N,"kind":"timeout"|"crashed"|"oom"|"isolation-failed","reason":"…"}
//   fd 4, worker → dispatcher: JSON lines.
//         {"op":"ready","pid":…,"laravel":"8.83.26","php":"8.2.36"}
//                            (with "app": appconfig.php's answer, when
//                            KQUEUE_DESCRIBE_APP=1)
//         {"op":"began"}     the job is about to run (JobProcessing): its attempt counts
//                            (a pool worker says it on fd 5 instead, below)
//         {"op":"done","deleted":…,"released":…,"release_at":…,"failed":…,"error":…,"tags":[…]|null,"us":…}
//                            (us: how long it ran, in µs, from its request:
//                            its duration, as the daemon may read it late)
//         {"op":"done","declined":"…"}   not run (the app is down, the queue
//                                         paused, a Looping listener said no):
//                                         it goes back as it was
//         {"op":"restart"}   php artisan queue:restart was issued
//         {"op":"boot-failed","error":"…"}
//         {"op":"stop","reason":"max_jobs"}   (dispatcher → worker) why it is
//                                              let go, for WorkerStopping
//   fd 5 (a pool worker: KQUEUE_BEGAN_FD=5), worker → dispatcher: "began" as
//         the run's number ("1\n" for the first job handed to it, counting
//         every "run" request), which the dispatcher reads only when it needs
//         to know: not a wake-up of the daemon per job.
//   fd 6 (KQUEUE_BEGAN_MAP_FD=6): a file of 8 bytes, the same number as a
//         native uint64, which the worker maps shared and stores "began"
//         in instead of fd 5 when PHP's FFI can: not a system call per job
//         (each one costs PHP its TLB on a host that flushes it on every
//         system call). The dispatcher takes the greater of the two.
// EOF on fd 3 ends the worker. So does the dispatcher's death (SIGTERM, its
// parent-death signal): the worker finishes the job it has begun, then
// exits; a job not begun is left to go back to its queue as it was.

namespace KQueue\Worker;

use Illuminate\Contracts\Debug\ExceptionHandler;
use Illuminate\Queue\Events\JobFailed;
use Illuminate\Queue\Jobs\Job as BaseJob;
use Illuminate\Queue\Events\JobProcessing;
use Illuminate\Queue\MaxAttemptsExceededException;
use Illuminate\Queue\WorkerOptions;
use RuntimeException;
use Throwable;

final class Server
{
    // The word that a job is about to run (exec/worker.go began).
    private const BEGAN = '{"op":"began"}'."\n";
    // The answer of a job that deleted itself without an error, as
    // result() would encode it, up to its duration: the daemon recognises
    // it byte for byte (exec/worker.go doneOK), and it is written without
    // building it.
    private const DONE_OK = '{"op":"done","deleted":true,"released":false,"release_at":null,"failed":false,"error":null,"us":';

    private $in;
    private $out;
    private $began = null; // fd 5, a pool worker's: where "began" goes
    private $beganAt = null; // fd 6 mapped (a uint64_t *), where it goes when set
    private $runs = 0; // "run" requests received (the number fd 5 says)
    private $app;
    private $worker;
    private $resetScope; // the worker's, called before every job as queue:work does
    private $options;
    private $cache;
    private $connection;
    private $lastRestart;
    private $lastRestartCheck = 0.0;
    private $forks = 0; // forked children not yet reaped
    private $orphaned = false; // the dispatcher is gone (SIGTERM)
    private $jobTimeout = null; // the running job's timeout, while one runs
    private $announce = false; // the next JobProcessing is the job's own: say "began"
    private $queues; // the instance's queues, comma-separated (queue:work's --queue)
    private $makeJob; // builds the job object for a payload (see job.php)
    private $downFile = null; // the app's maintenance state, when it is a file
    private $events; // the app's event dispatcher
    private $manager; // the app's queue manager
    private $pausable; // this Laravel has queue:pause (12.40+)
    private $down = null; // the maintenance state last seen, and when
    private $downAt = 0; // an hrtime
    private $paused = []; // the queues last seen paused (queue:pause), and when
    private $pausedAt = 0.0;
    private $stopReason = null; // why the dispatcher lets this worker go
    private $jobsProcessed = 0; // for WorkerStopping
    private $lastJobAt = null;
    private $bus; // the app's command bus
    private $taggable = []; // job class => whether it has tags()
    private $tags = null; // the running job's own tags(), once read

    public function __construct($in, $out, $began = null)
    {
        $this->in = $in;
        $this->out = $out;
        $this->began = $began;
        if ($began !== null && getenv('KQUEUE_BEGAN_MAP_FD') === '6') {
            $this->beganAt = self::mapCounter(6);
        }
    }

    // mapCounter maps the 8 bytes of file descriptor $fd shared, as a
    // uint64_t *, or returns null: no FFI (or ffi.enable off), no glibc,
    // or the mapping failed — "began" then goes to fd 5.
    private static function mapCounter(int $fd)
    {
        if (! class_exists(\FFI::class)) {
            return null;
        }
        try {
            $libc = \FFI::cdef('intptr_t mmap(void *addr, size_t length, int prot, int flags, int fd, long offset);', 'libc.so.6');
            $at = $libc->mmap(null, 8, 3 /* PROT_READ|PROT_WRITE */, 1 /* MAP_SHARED */, $fd, 0);
            if ($at === -1) {
                return null;
            }

            return $libc->cast('uint64_t *', $at);
        } catch (Throwable $e) {
            return null;
        }
    }

    public function boot(string $appPath): void
    {
        // The dispatcher's death: finish what is in hand, start nothing else,
        // and not for longer than the job's timeout (nobody else enforces it).
        // Without pcntl, the worker dies with the dispatcher as before.
        if (function_exists('pcntl_async_signals')) {
            pcntl_async_signals(true);
            pcntl_signal(SIGTERM, function () {
                $this->orphaned = true;
                if ($this->jobTimeout) {
                    pcntl_alarm($this->jobTimeout);
                }
            });
        }
        require $appPath.'/vendor/autoload.php';
        require __DIR__.'/job.php'; // extends Laravel's classes: after the autoloader
        define('KQUEUE_WORKER', true); // appconfig.php's functions, not its script
        require __DIR__.'/appconfig.php';
        $this->app = require $appPath.'/bootstrap/app.php';
        $this->app->make(\Illuminate\Contracts\Console\Kernel::class)->bootstrap();

        $app = $this->app;
        $this->connection = getenv('KQUEUE_CONNECTION') ?: $app['config']['queue.default'];

        // The moment a job's attempt counts: Laravel is about to run it.
        // (Its own JobProcessing only: a job it dispatches inline fires more.)
        $app['events']->listen(JobProcessing::class, function () {
            if ($this->announce) {
                $this->announce = false;
                if ($this->beganAt !== null) {
                    $this->beganAt[0] = $this->runs;
                } elseif ($this->began !== null) {
                    $this->write($this->runs."\n", $this->began);
                } else {
                    $this->write(self::BEGAN);
                }
            }
        });

        // What queue:work's listenForEvents() does: the failed_jobs row —
        // which must not be lost (see logFailed).
        $app['events']->listen(JobFailed::class, function ($event) {
            $this->logFailed($event);
        });

        $this->worker = $app->make('queue.worker');
        $this->resetScope = (function () {
            return $this->resetScope ?? null;
        })->call($this->worker);
        if ($app->bound('cache')) {
            $this->cache = $app['cache']->driver();
            $this->worker->setCache($this->cache);
        }
        $this->options = new WorkerOptions();
        $this->options->name = 'kqueue';
        $this->options->maxTries = (int) (getenv('KQUEUE_TRIES') === false ? 1 : getenv('KQUEUE_TRIES'));
        $this->options->backoff = getenv('KQUEUE_BACKOFF') ?: '0';
        $this->options->timeout = 0; // enforced by the dispatcher
        $this->options->force = getenv('KQUEUE_FORCE') === '1';
        // The queues as queue:work's --queue names them, for its events.
        $this->queues = getenv('KQUEUE_QUEUES') ?: $app['config']['queue.connections.'.$this->connection.'.queue'] ?? 'default';
        // The maintenance state as a file (Laravel 8, and the file driver
        // after): checked for every job, as queue:work does, by its path.
        if (! method_exists($app, 'maintenanceMode') || ($app['config']['app.maintenance.driver'] ?? 'file') === 'file') {
            $this->downFile = $app->storagePath().'/framework/down';
        }
        $this->makeJob = Jobs::factory($app, $this->connection);
        $this->events = $app['events'];
        $this->manager = $app['queue'];
        $this->pausable = method_exists($this->manager, 'getPausedQueues');

        $this->lastRestart = $this->restartTimestamp();
        $this->lastRestartCheck = microtime(true);
        $bus = $app->make(\Illuminate\Contracts\Bus\Dispatcher::class);
        $this->bus = method_exists($bus, 'pipeThrough') ? $bus : null;
    }

    // withTags runs a job, reading its command's own tags() on the way (what
    // Horizon records at push): a pipe on the app's bus, through which
    // Laravel hands the command to its handler, for this job only — only
    // for a class that has tags(), so the others pay nothing.
    private function withTags(BaseJob $job, callable $run): void
    {
        $class = $job->payload()['data']['commandName'] ?? null;
        if (! is_string($class) || $this->bus === null ||
            ! ($this->taggable[$class] ??= class_exists($class) && method_exists($class, 'tags'))) {
            $run();

            return;
        }
        $pipes = (function () {
            return $this->pipes;
        })->call($this->bus);
        $this->bus->pipeThrough(array_merge($pipes, [function ($command, $next) {
            if ($this->tags === null && method_exists($command, 'tags')) {
                try {
                    $this->tags = array_values(array_map('strval', (array) $command->tags()));
                } catch (Throwable $e) {
                    $this->tags = [];
                }
            }

            return $next($command);
        }]));
        try {
            $run();
        } finally {
            $this->bus->pipeThrough($pipes);
        }
    }

    // serve answers requests until EOF. A template (the first process)
    // announces itself; a forked child has already.
    public function serve(bool $announce = true): void
    {
        if ($announce) {
            $ready = [
                'op' => 'ready',
                'pid' => getmypid(),
                'laravel' => $this->app->version(),
                'php' => PHP_VERSION,
            ];
            if (getenv('KQUEUE_DESCRIBE_APP') === '1') {
                $ready['app'] = $this->describeApp();
            }
            $this->send($ready);
            $this->fire('WorkerStarting', $this->connection, $this->queues, $this->options);
        }
        while (true) {
            $read = [$this->in];
            $write = $except = null;
            if ($this->orphaned) {
                exit(0); // the dispatcher is gone: nothing more starts
            }
            $ready = @stream_select($read, $write, $except, 1);
            if ($ready === 0) {
                $this->reapForks();
                $this->checkRestart();
                $this->pausedQueues(); // a pause is seen, and told, while idle too
                $this->fire('WorkerIdle', $this->connection, $this->queues, $this->options);
                continue;
            }
            if ($ready === false) {
                continue; // interrupted by a signal
            }
            $line = fgets($this->in);
            if ($line === false) {
                $this->stopping(); // the dispatcher closed fd 3
                return;
            }
            $req = json_decode($line, true);
            $body = $this->readBody((int) ($req['len'] ?? 0));
            if ($body === null) {
                return;
            }
            switch ($req['op'] ?? '') {
                case 'run':
                    $this->jobTimeout = (int) ($req['timeout'] ?? 0);
                    $answer = $this->run($req, $body);
                    $this->jobTimeout = null;
                    $this->write($answer);
                    break;
                case 'fail':
                    $this->send($this->failOutside($req, $body));
                    break;
                case 'fork':
                    $pid = $this->fork((string) ($req['socket'] ?? ''));
                    if ($pid === 0) {
                        return; // the child has run its job
                    }
                    $this->send(['op' => 'done', 'pid' => $pid]);
                    break;
                case 'stop':
                    $this->stopReason = (string) ($req['reason'] ?? '');
                    break;
                case 'defaults':
                    $this->send(['op' => 'done', 'defaults' => (object) $this->classDefaults((string) ($req['class'] ?? ''))]);
                    break;
                default:
                    $this->send(['op' => 'done', 'error' => 'unknown op']);
            }
            if (microtime(true) - $this->lastRestartCheck >= 1.0) {
                $this->checkRestart();
            }
        }
    }

    // run runs one job through Laravel's Worker::process and returns its
    // answer line.
    private function run(array $req, string $body): string
    {
        $this->runs++;
        $start = hrtime(true);
        // What queue:work checks before it pops a job (daemonShouldRun).
        // (The poller then takes nothing from the job's queue for a second,
        // as queue:work's loop pauses.)
        try {
            $why = $this->declined($req['queue']);
        } catch (Throwable $e) {
            // A Looping listener, or the maintenance state's cache, failed:
            // queue:work would die here before it popped anything.
            $this->app[ExceptionHandler::class]->report($e);
            $why = 'checking whether to run it failed: '.get_class($e).': '.$e->getMessage();
        }
        if ($why !== null) {
            return $this->encode(['op' => 'done', 'declined' => $why]);
        }
        $job = ($this->makeJob)($body, $req['queue'], $req['row'] ?? null, $req['sqs'] ?? null);
        $error = null;
        $this->jobsProcessed++;
        $this->resetScope();
        try {
            if ($missing = $this->missingClass($job)) {
                // Laravel would fail it too, later and with an obscure error.
                $job->fail($error = new UnknownJobClassException(sprintf(
                    'job class %s does not exist in the Laravel app at %s: the payload names it in data.commandName; deploy the class or delete the job',
                    $missing, $this->app->basePath())));
                return $this->encode($this->result($job, $error) + ['us' => self::since($start)]);
            }
            if ($this->orphaned) {
                exit(0); // the dispatcher is gone: not begun, it goes back as it was
            }
            $this->announce = true;
            $this->tags = null;
            $this->withTags($job, function () use ($job) {
                $this->worker->process($this->connection, $job, $this->options);
            });
        } catch (Throwable $e) {
            $error = $e;
            $this->app[ExceptionHandler::class]->report($e);
        } finally {
            $this->announce = false;
            $this->lastJobAt = hrtime(true) / 1e9; // as Laravel 13's loop records it
        }
        $us = self::since($start);
        if ($error === null && $job->isDeleted() && ! $job->isReleased() && ! $job->hasFailed() && $this->tags === null) {
            return self::DONE_OK.$us."}\n";
        }

        return $this->encode($this->result($job, $error) + ['us' => $us]);
    }

    // since is the time from $start (an hrtime) to now, in µs.
    private static function since(int $start): int
    {
        return intdiv(hrtime(true) - $start, 1000);
    }

    // declined says why the job must not run now, as queue:work's loop
    // would not pop it, or null: the app is down for maintenance (unless
    // [job] force), the job's queue is paused (queue:pause, Laravel 12.40+),
    // or a Queue::looping listener returned false. Looping is not fired
    // while the app is down, as in queue:work.
    private function declined(string $queue): ?string
    {
        if (! $this->options->force && $this->isDown()) {
            return 'the app is down for maintenance (php artisan down)';
        }
        if ($this->events->hasListeners(\Illuminate\Queue\Events\Looping::class)
            && $this->events->until(new \Illuminate\Queue\Events\Looping($this->connection, $this->queues, $this->options)) === false) {
            return 'a Queue::looping listener returned false';
        }
        if (in_array($queue, $this->pausedQueues(), true)) {
            return "the queue $queue is paused (php artisan queue:pause)";
        }

        return null;
    }

    // isDown is the app's maintenance state: read before a job when it is
    // a file (as queue:work does) — but not twice in a millisecond, which
    // in a stream of quick jobs would be a system call for each, while a
    // job queue:work popped just before `php artisan down` runs too —, at
    // most once a second from a cache.
    private function isDown(): bool
    {
        $now = hrtime(true);
        $every = $this->downFile !== null ? 1000000 : 1000000000; // ns
        if ($this->down === null || $now - $this->downAt >= $every) {
            $this->down = $this->downFile !== null ? file_exists($this->downFile) : (bool) $this->app->isDownForMaintenance();
            $this->downAt = $now;
        }

        return $this->down;
    }

    // pausedQueues are the instance's queues paused with queue:pause, read
    // from the app's cache at most once a second; a change fires
    // WorkerQueuePaused / WorkerQueueResumed, as queue:work's loop does.
    private function pausedQueues(): array
    {
        if (! $this->pausable) {
            return [];
        }
        $now = microtime(true);
        if ($now - $this->pausedAt < 1.0) {
            return $this->paused;
        }
        $this->pausedAt = $now;
        try {
            $paused = $this->manager->getPausedQueues($this->connection, explode(',', $this->queues));
        } catch (Throwable $e) {
            $this->app[ExceptionHandler::class]->report($e);
            return $this->paused;
        }
        foreach (array_diff($paused, $this->paused) as $queue) {
            $this->fire('WorkerQueuePaused', $this->connection, $queue);
        }
        foreach (array_diff($this->paused, $paused) as $queue) {
            $this->fire('WorkerQueueResumed', $this->connection, $queue);
        }

        return $this->paused = array_values($paused);
    }

    // stopping fires WorkerStopping as queue:work's stop() does when the
    // worker is let go, with the status and (Laravel 13) the reason the
    // dispatcher gave.
    private function stopping(): void
    {
        $reasons = [ // the dispatcher's recycle reason: [status, WorkerStopReason]
            'max_jobs' => [0, 'max_jobs'],
            'max_memory' => [12, 'memory'],
            'max_lifetime' => [0, 'max_time'],
            'restart' => [0, 'restart_signal'],
            'reload' => [0, 'restart_signal'],
            'timeout' => [1, 'timed_out'],
        ];
        [$status, $reason] = $reasons[$this->stopReason] ?? [0, 'interrupted'];
        $enum = \Illuminate\Queue\WorkerStopReason::class; // Laravel 13
        $why = function_exists('enum_exists') && enum_exists($enum) ? $enum::from($reason) : null;
        $this->fire('WorkerStopping', $status, $this->options, $why, $this->jobsProcessed, $this->lastJobAt,
            memory_get_usage(true) / 1024 / 1024, $this->connection, $this->queues);
    }

    // fire dispatches the worker event $name (Illuminate\Queue\Events)
    // with args, when this Laravel has it; arguments an older constructor
    // does not take are dropped, as PHP does.
    private function fire(string $name, ...$args): void
    {
        $class = '\\Illuminate\\Queue\\Events\\'.$name;
        if (class_exists($class)) {
            try {
                $this->app['events']->dispatch(new $class(...$args));
            } catch (Throwable $e) {
                $this->app[ExceptionHandler::class]->report($e);
            }
        }
    }

    // logFailed writes a failed job's row through the app's failer, as
    // queue:work does, but never loses it: a write that fails (a database
    // hiccup; queue:retry, which pushes a job back before it deletes its
    // old row, so a quick second failure meets the same uuid) is tried
    // again for about three seconds; if it still fails, the record goes to
    // the queue's kqueue-failed list in Redis and the log says so.
    private function logFailed($event): void
    {
        $failer = $this->app['queue.failer'];
        $body = $event->job->getRawBody();
        $last = null;
        $start = microtime(true);
        for ($wait = 0.05; ; $wait = min($wait * 2, 1.0)) {
            try {
                $failer->log($event->connectionName, $event->job->getQueue(), $body, $event->exception);
                return;
            } catch (Throwable $e) {
                $last = $e;
            }
            // A duplicate uuid is queue:retry's old row, deleted right after
            // its push unless the database is slow: worth waiting longer for
            // than an outage is.
            // Within the job's own timeout: the dispatcher's deadline runs.
            $bound = self::isDuplicate($e) ? ($this->jobTimeout ? min(30.0, max(3.0, $this->jobTimeout / 2)) : 30.0) : 3.0;
            if (microtime(true) - $start + $wait > $bound) {
                break;
            }
            usleep((int) ($wait * 1e6));
        }
        $record = json_encode([
            'connection' => $event->connectionName, 'queue' => $event->job->getQueue(), 'payload' => $body,
            'exception' => (string) $event->exception, 'failed_at' => date('c'), 'why_not_recorded' => $last->getMessage(),
        ], JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PARTIAL_OUTPUT_ON_ERROR);
        $key = 'queues:'.$event->job->getQueue().':kqueue-failed';
        try {
            $this->app['redis']->connection($this->app['config']['queue.connections.'.$this->connection.'.connection'] ?? null)->rpush($key, $record);
            $kept = "kept in Redis list $key";
        } catch (Throwable $e) {
            $kept = 'and could not be kept in Redis either ('.$e->getMessage().'): the record follows: '.$record;
        }
        fwrite(STDERR, sprintf("kqueue: the failed_jobs row of %s (uuid %s) could not be written (%s); %s\n",
            $event->job->resolveName(), $event->job->uuid() ?? '?', $last->getMessage(), $kept));
    }

    // isDuplicate tells a unique index's refusal (a row with the same uuid
    // is there), as each database words it.
    private static function isDuplicate(Throwable $e): bool
    {
        $class = '\\Illuminate\\Database\\UniqueConstraintViolationException';
        if (class_exists($class) && $e instanceof $class) {
            return true;
        }
        $m = $e->getMessage();

        return stripos($m, 'UNIQUE constraint failed') !== false || stripos($m, 'Duplicate entry') !== false
            || stripos($m, 'duplicate key') !== false;
    }

    // failOutside applies Laravel's timeout rules (Worker's SIGALRM handler)
    // to a job whose own process is gone: fail it when its attempts are used
    // up, its maxExceptions is reached or it must fail on timeout; otherwise
    // release it at once with its backoff.
    private function failOutside(array $req, string $body): array
    {
        $this->tags = null; // it does not run: no tags of its own
        $job = ($this->makeJob)($body, $req['queue'], $req['row'] ?? null, $req['sqs'] ?? null);
        $reason = (string) ($req['reason'] ?? 'the job was stopped');
        $kind = (string) ($req['kind'] ?? '');
        $timedOut = $kind === 'timeout';
        if ($timedOut) {
            $class = class_exists(\Illuminate\Queue\TimeoutExceededException::class)
                ? \Illuminate\Queue\TimeoutExceededException::class
                : MaxAttemptsExceededException::class;
            $e = new $class($reason);
        } elseif ($kind === 'oom') {
            $e = new MemoryLimitExceededException($reason);
        } elseif ($kind === 'isolation-failed') {
            $e = new IsolationFailedException($reason);
        } else {
            $e = new JobCrashedException($reason);
        }
        $this->resetScope();
        try {
            $this->callWorker('markJobAsFailedIfWillExceedMaxAttempts', $this->connection, $job, (int) $this->options->maxTries, $e);
            if (! $job->hasFailed()) {
                $this->callWorker('markJobAsFailedIfWillExceedMaxExceptions', $this->connection, $job, $e);
            }
            if ($timedOut && ! $job->hasFailed()) {
                $this->callWorker('markJobAsFailedIfItShouldFailOnTimeout', $this->connection, $job, $e);
            }
            // Running out of memory again is certain, and a host that cannot
            // isolate a job rarely heals by itself: with unlimited tries
            // either would loop forever, so it fails.
            if (($kind === 'oom' || $kind === 'isolation-failed') && ! $job->hasFailed() && ! $job->retryUntil()
                && ($job->maxTries() ?? $this->options->maxTries) == 0) {
                $job->fail($e);
            }
            if (! $job->hasFailed() && ! $job->isReleased()) {
                $job->release($this->callWorker('calculateBackoff', $job, $this->options));
            }
        } catch (Throwable $t) {
            $this->app[ExceptionHandler::class]->report($t);
            return $this->result($job, $t);
        }

        return $this->result($job, $e);
    }

    // fork makes a child for one isolated job: a copy of this booted
    // worker that shares none of its connections. The child connects to
    // the dispatcher's socket, says its pid, and serves that connection
    // (the dispatcher moves it into the job's cgroup first). The template
    // returns the child's pid; in the child, fork returns 0 once it is done.
    private function fork(string $socket): int
    {
        // Close every connection first, in the template: a child must share
        // none, and closing one in the child would speak on the template's
        // socket (MySQL's QUIT). The template reconnects when it needs to.
        foreach (array_keys($this->app['db']->getConnections()) as $name) {
            $this->app['db']->purge($name);
        }
        if ($this->app->resolved('redis')) {
            foreach (array_keys($this->app['redis']->connections() ?? []) as $name) {
                $this->app['redis']->purge($name);
            }
        }
        $pid = pcntl_fork();
        if ($pid === -1) {
            throw new RuntimeException('pcntl_fork failed');
        }
        if ($pid > 0) {
            $this->forks++;
            $this->reapForks();
            return $pid;
        }
        // The child: its own process group, none of the template's channels.
        posix_setpgid(0, 0);
        $this->forks = 0;
        fclose($this->in);
        fclose($this->out);
        $conn = stream_socket_client('unix://'.$socket, $errno, $errstr, 10);
        if ($conn === false) {
            fwrite(STDERR, "kqueue fork child: connect $socket: $errstr\n");
            exit(1);
        }
        $this->in = $this->out = $conn;
        $this->began = $this->beganAt = null; // a child says everything on its socket
        $this->send(['op' => 'ready', 'pid' => getmypid()]);
        $this->serve(false);
        exit(0);
    }

    // reapForks collects the forked children that have ended (a template
    // only: a pool worker must not reap what its jobs started).
    private function reapForks(): void
    {
        while ($this->forks > 0 && pcntl_waitpid(-1, $status, WNOHANG) > 0) {
            $this->forks--;
        }
    }

    // classDefaults returns the declared defaults of the properties that
    // choose a job's strategy, for the classes whose serialized form leaves
    // them out (Laravel 10+ omits properties at their defaults).
    private function classDefaults(string $class): array
    {
        try {
            if ($class === '' || ! class_exists($class)) {
                return [];
            }
            $defaults = (new \ReflectionClass($class))->getDefaultProperties();
        } catch (Throwable $e) {
            return []; // a class that does not load: running the job fails it
        }
        $out = [];
        foreach (['isolated', 'maxMemory', 'cpu'] as $name) {
            if (array_key_exists($name, $defaults) && is_scalar($defaults[$name])) {
                $out[$name] = $defaults[$name];
            }
        }
        return $out;
    }

    // missingClass names the job class of an object job that the app does
    // not have, or returns null.
    private function missingClass(BaseJob $job): ?string
    {
        $payload = $job->payload();
        $class = $payload['data']['commandName'] ?? null;
        if (($payload['job'] ?? '') !== 'Illuminate\\Queue\\CallQueuedHandler@call' || ! is_string($class)) {
            return null;
        }
        return class_exists($class) ? null : $class;
    }

    // result is a job's answer. Keep the keys in this order: the daemon
    // recognises the answer of a job that simply succeeded byte for byte
    // (exec/worker.go doneOK, DONE_OK here) before it decodes any JSON.
    private function result(BaseJob $job, ?Throwable $e): array
    {
        return [
            'op' => 'done',
            'deleted' => $job->isDeleted(),
            'released' => $job->isReleased(),
            'release_at' => $job->releaseAt,
            'failed' => $job->hasFailed(),
            'error' => $e ? get_class($e).': '.$e->getMessage() : null,
            'tags' => $this->tags,
        ];
    }

    // resetScope runs Laravel's own reset between jobs (the log context,
    // scoped instances, resolved facades), as Worker::daemon does.
    private function resetScope(): void
    {
        if ($this->resetScope !== null) {
            ($this->resetScope)();
        }
    }

    // callWorker calls one of Worker's protected methods, so the rules are
    // Laravel's own code in every version.
    private function callWorker(string $method, ...$args)
    {
        return (function () use ($method, $args) {
            return $this->{$method}(...$args);
        })->call($this->worker);
    }

    // restartTimestamp is when `php artisan queue:restart` last ran, as the
    // app's cache says; its server given a moment to answer (a worker must
    // not wait a minute to say it is ready, or to hear the dispatcher, for
    // a cache whose host is down).
    private function restartTimestamp()
    {
        if (! $this->cache) {
            return null;
        }
        try {
            return \KQueue\AppConfig\briefly($this->app, function () {
                return $this->cache->get('illuminate:queue:restart');
            });
        } catch (Throwable $e) {
            return $this->lastRestart;
        }
    }

    // describeApp is appconfig.php's answer for the app this worker has
    // booted: the daemon reads the app's queue configuration from the first
    // of its workers to boot, not from a PHP run of its own.
    private function describeApp(): array
    {
        try {
            return \KQueue\AppConfig\describe($this->app);
        } catch (Throwable $e) {
            return \KQueue\AppConfig\failure($e);
        }
    }

    // checkRestart reports `php artisan queue:restart` once.
    private function checkRestart(): void
    {
        $this->lastRestartCheck = microtime(true);
        $now = $this->restartTimestamp();
        if ($now != $this->lastRestart) {
            $this->lastRestart = $now;
            $this->send(['op' => 'restart']);
        }
    }

    private function readBody(int $len): ?string
    {
        $body = '';
        while (strlen($body) < $len) {
            $chunk = fread($this->in, $len - strlen($body));
            if ($chunk === false || ($chunk === '' && feof($this->in))) {
                return null;
            }
            $body .= $chunk;
        }
        return $body;
    }

    public function send(array $msg): void
    {
        $this->write($this->encode($msg));
    }

    private function encode(array $msg): string
    {
        return json_encode($msg, JSON_UNESCAPED_SLASHES | JSON_INVALID_UTF8_SUBSTITUTE)."\n";
    }

    private function write(string $line, $to = null): void
    {
        for ($written = 0; $written < strlen($line); $written += $n) {
            $n = fwrite($to ?? $this->out, substr($line, $written));
            if ($n === false || $n === 0) {
                exit(1);
            }
        }
    }
}

$in = fopen('php://fd/3', 'rb');
$out = fopen('php://fd/4', 'wb');
if ($in === false || $out === false) {
    fwrite(STDERR, "kqueue worker: fd 3 and fd 4 must be open\n");
    exit(2);
}
$began = getenv('KQUEUE_BEGAN_FD') === '5' ? fopen('php://fd/5', 'wb') : null;
$server = new Server($in, $out, $began ?: null);
// [pool] nice: this process, and every fork of it, that many levels below
// kqueue's priority. Done here, not by kqueue: a process may always lower
// its own priority, while kqueue, running as root with few capabilities,
// may not change that of a process of the app's user.
$nice = (int) getenv('KQUEUE_NICE');
if ($nice > 0 && !@proc_nice($nice)) {
    $server->send(['op' => 'boot-failed', 'error' => "PHP could not lower its priority by $nice nice levels ([pool] nice): proc_nice() failed"]);
    exit(1);
}
try {
    $server->boot((string) getenv('KQUEUE_APP_PATH'));
} catch (Throwable $e) {
    $server->send(['op' => 'boot-failed', 'error' => get_class($e).': '.$e->getMessage().' in '.$e->getFile().':'.$e->getLine()]);
    exit(1);
}
$server->serve();
