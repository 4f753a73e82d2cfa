<?php

use App\Jobs;
use App\Probe;
use Illuminate\Support\Facades\Artisan;
use Illuminate\Support\Facades\Bus;

// kq:dispatch pushes the jobs of one named scenario onto the app's queue, the
// way any Laravel app does: with dispatch().
Artisan::command('kq:dispatch {scenario} {--count=1} {--queue=} {--from=0}', function ($scenario) {
    $count = (int) $this->option('count');
    $from = (int) $this->option('from');
    $queue = $this->option('queue') ?: null;
    $on = function ($pending) use ($queue) {
        if ($queue !== null) {
            $pending->onQueue($queue);
        }
        return $pending;
    };

    switch ($scenario) {
        case 'noop':
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\Noop::dispatch());
            }
            break;

        case 'record':
            for ($i = $from; $i < $from + $count; $i++) {
                $on(Jobs\Record::dispatch("record-$i"));
            }
            break;

        // paced: jobs of 50 ms each, so that a run lasts a while.
        case 'paced':
            for ($i = $from; $i < $from + $count; $i++) {
                $on(Jobs\Sleeps::dispatch("paced-$i", 0.05, 60, 0));
            }
            break;

        // long: jobs of 14 s each, longer than the tests' 12 s retry_after.
        case 'long':
            for ($i = $from; $i < $from + $count; $i++) {
                $on(Jobs\Sleeps::dispatch("long-$i", 14, 60, 0));
            }
            break;

        // due: delayed jobs due 1 to 6 s from now, each recording how late
        // it ran.
        case 'due':
            for ($i = $from; $i < $from + $count; $i++) {
                $delay = 1 + $i % 6;
                $on(Jobs\Due::dispatch("due-$i", time() + $delay)->delay($delay));
            }
            break;

        // mix: every outcome of docs/architecture.md (Outcomes) that runs in PHP (no timeouts, no crashes).
        case 'mix':
            $on(Jobs\Record::dispatch('ok'));
            $on(Jobs\Fails::dispatch('fails'));
            $on(Jobs\Flaky::dispatch('flaky'));
            $on(Jobs\MaxExceptions::dispatch('max-exceptions'));
            $on(Jobs\RetryUntil::dispatch('retry-until-future', time() + 300));
            $on(Jobs\RetryUntil::dispatch('retry-until-past', time() - 10));
            $on(Jobs\Releases::dispatch('releases'));
            $on(Jobs\FailsManually::dispatch('fails-manually'));
            $on(Jobs\Secret::dispatch('secret'));
            $on(Jobs\Unique::dispatch('unique'));
            $on(Jobs\Record::dispatch('delayed')->delay(1));
            Bus::chain([
                new Jobs\Record('chain-1'),
                new Jobs\Record('chain-2'),
                new Jobs\Record('chain-3'),
            ])->onQueue($queue)->dispatch();
            $on(dispatch(function () {
                Probe::record(['kind' => 'run', 'tag' => 'closure', 'attempt' => 1, 'note' => '']);
            }));
            break;

        // loop: what the worker loop does around a job (Queue::looping rolls
        // back a transaction a job left open; the job object is a RedisJob).
        case 'loop':
            $on(Jobs\LeavesTransaction::dispatch('tx-open'));
            $on(Jobs\TransactionLevel::dispatch('tx-after'));
            $on(Jobs\Introspects::dispatch('introspect'));
            break;

        // alwaysfails: jobs that fail at their one try, every time.
        case 'alwaysfails':
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\AlwaysFails::dispatch("always-$i"));
            }
            break;

        // blurts: jobs that print a line of 2 MiB, then a short one.
        case 'blurts':
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\Blurts::dispatch("blurts-$i", 2 << 20));
            }
            break;

        // loud: a job that fails with an error of 300,000 bytes.
        case 'loud':
            $on(Jobs\FailsLoudly::dispatch('loud', 300000));
            break;

        // batch: a batch of --count jobs that allows failures, the first
        // of which fails, named "console-batch".
        case 'batch':
            $jobs = [];
            for ($i = 0; $i < $count; $i++) {
                $jobs[] = new Jobs\Batched($i === 0 ? 'fail-batched' : "batched-$i");
            }
            $batch = Bus::batch($jobs)->name('console-batch')->allowFailures();
            if ($queue) {
                $batch->onQueue($queue);
            }
            $this->line($batch->dispatch()->id);
            break;

        // console: failed jobs for the console to find, one with markup
        // everywhere, one a retry mends; and a job with tags() of its own.
        case 'console':
            $on(Jobs\Hostile::dispatch());
            $on(Jobs\FailsFirstRun::dispatch('mended-by-retry'));
            $on(Jobs\Tagged::dispatch(42));
            break;

        // timeout: jobs that sleep past their 1 s timeout, with one try and with two.
        case 'timeout':
            $on(Jobs\Sleeps::dispatch('timeout-once', 30, 1, 1));
            $on(Jobs\Sleeps::dispatch('timeout-twice', 30, 1, 2));
            break;

        case 'chatty':
            $on(Jobs\Chatty::dispatch('chatty'));
            break;

        // outside: a job that writes beside the app's code, outside what it may write.
        case 'outside':
            $on(Jobs\WritesOutside::dispatch());
            break;

        case 'hog':
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\Hog::dispatch("hog-$i", 64));
            }
            break;

        // isolated: a memory hog, a job whose child outlives its timeout, a
        // fork bomb, then ordinary jobs that must run normally after them.
        case 'isolated':
            $on(Jobs\IsolatedHog::dispatch('hog'));
            $on(Jobs\IsolatedSpawner::dispatch('spawner'));
            $on(Jobs\ForkBomb::dispatch('bomb'));
            for ($i = 0; $i < 3; $i++) {
                $on(Jobs\Record::dispatch("after-$i"));
            }
            break;

        // status: one failure, then two jobs that run for a while.
        case 'status':
            $on(Jobs\FailsManually::dispatch('status-failure'));
            $on(Jobs\Sleeps::dispatch('sleep-0', 3, 60, 1));
            $on(Jobs\Sleeps::dispatch('sleep-1', 3, 60, 1));
            break;

        case 'isolated-sleep':
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\IsolatedSleeper::dispatch("iso-$i"));
            }
            break;

        // chaos: a mix for the fault-injection suite. Every job but the
        // fail-* ones must end up run; those end in failed_jobs.
        case 'chaos':
            for ($i = 0; $i < $count; $i++) {
                switch ($i % 100) {
                    case 0: case 50:
                        $on(Jobs\Fails::dispatch("fail-$i"));
                        break;
                    case 1:
                        $on(Jobs\Sleeps::dispatch("slow-$i", 0.3, 60, 0));
                        break;
                    case 2:
                        $on(Jobs\IsolatedSleeper::dispatch("iso-$i"));
                        break;
                    default:
                        $on(Jobs\Record::dispatch("rec-$i"));
                }
            }
            break;

        case 'cpu':
            $on(Jobs\CpuBound::dispatch('cpu'));
            break;

        case 'crash':
            $on(Jobs\Crashes::dispatch('crash'));
            break;

        case 'sleep':
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\Sleeps::dispatch("sleep-$i", 2, 60, 1));
            }
            break;

        // spans: jobs that record their start and end (--from=-1: held
        // until the test lets them go; else they last 250 ms).
        case 'spans':
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\Span::dispatch("span-$i", 0.25, $from < 0));
            }
            break;

        // busy: 200 ms jobs that keep workers busy (latency under load).
        case 'busy':
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\Sleeps::dispatch("busy-$i", 0.2, 60, 1));
            }
            break;

        // waits: one failure, then jobs that run until the test lets them go.
        case 'waits':
            $on(Jobs\FailsManually::dispatch('waits-failure'));
            for ($i = 0; $i < $count; $i++) {
                $on(Jobs\Waits::dispatch("wait-$i"));
            }
            break;

        // both-ways: jobs that say how they run with plain properties and
        // the same jobs written on the kqueue library's KQueueJob, in pairs.
        case 'both-ways':
            if (! class_exists(\KQueue\Jobs\KQueueJob::class)) {
                $this->error('the kqueue PHP library is not loaded: set KQUEUE_PHP_LIBRARY to php-library/src');
                return 1;
            }
            foreach (['Limits', 'Unsaid', 'MustIsolate'] as $kind) {
                foreach (['Plain', 'KQueue'] as $style) {
                    $class = "App\\Jobs\\$style$kind";
                    $on($class::dispatch(strtolower("$style-$kind")));
                }
            }
            break;

        default:
            $this->error("unknown scenario $scenario");
            return 1;
    }

    return 0;
})->purpose('Dispatch the jobs of a test scenario');

// kq:pop pops with Laravel's own RedisQueue::pop and prints each job as
// [original, reserved copy]: the reference for kqueue's reserve script.
Artisan::command('kq:pop {queue} {--times=1}', function ($queue) {
    $connection = app('queue')->connection('redis');
    for ($i = 0; $i < (int) $this->option('times'); $i++) {
        $job = $connection->pop($queue);
        $this->line($job ? json_encode([$job->getRawBody(), $job->getReservedJob()]) : 'null');
    }
})->purpose('Pop jobs with Laravel and print them');

// kq:pause pauses a queue of the redis connection as queue:pause does, or
// for --ttl seconds (QueueManager::pauseFor, which no command offers);
// Laravel 12.40 and later.
Artisan::command('kq:pause {queue} {--ttl=0}', function ($queue) {
    $ttl = (int) $this->option('ttl');
    $ttl > 0 ? app('queue')->pauseFor('redis', $queue, $ttl) : app('queue')->pause('redis', $queue);
})->purpose('Pause a queue, for a while or until queue:resume');

// kq:paused prints whether a queue of the redis connection is paused.
Artisan::command('kq:paused {queue}', function ($queue) {
    $this->line(app('queue')->isPaused('redis', $queue) ? 'yes' : 'no');
})->purpose('Say whether a queue is paused');

// kq:failed prints each failed_jobs row as "displayName: first line of the
// exception" (its first 1,000 bytes), oldest first.
Artisan::command('kq:failed', function () {
    foreach (app('db')->table('failed_jobs')->orderBy('id')->get() as $row) {
        $name = json_decode($row->payload, true)['displayName'] ?? '?';
        $this->line($name.': '.substr(strtok($row->exception, "\n"), 0, 1000));
    }
})->purpose('Print the failed jobs, one line each');

// kq:stamp dispatches Stamp jobs one at a time, --gap milliseconds apart,
// from one process: the pickup latency benchmark's producer.
Artisan::command('kq:stamp {--count=200} {--gap=20} {--queue=}', function () {
    for ($i = 0; $i < (int) $this->option('count'); $i++) {
        dispatch(new \App\Jobs\Stamp(microtime(true)))->onQueue($this->option('queue') ?: null);
        usleep((int) $this->option('gap') * 1000);
    }
})->purpose('Dispatch timestamped jobs, spaced out');
