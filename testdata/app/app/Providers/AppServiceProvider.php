<?php

namespace App\Providers;

use App\Probe;
use Illuminate\Queue\Events\JobExceptionOccurred;
use Illuminate\Queue\Events\JobFailed;
use Illuminate\Queue\Events\JobProcessed;
use Illuminate\Queue\Events\JobProcessing;
use Illuminate\Support\Facades\DB;
use Illuminate\Support\Facades\Event;
use Illuminate\Support\Facades\Queue;
use Illuminate\Support\Facades\Redis;
use Illuminate\Support\ServiceProvider;
use KQueue\KQueueServiceProvider;

class AppServiceProvider extends ServiceProvider
{
    public function register()
    {
        // A composer app gets the kqueue library's provider by package
        // discovery; this app has no composer, and the library is optional.
        if (class_exists(KQueueServiceProvider::class)) {
            $this->app->register(KQueueServiceProvider::class);
        }
    }

    public function boot()
    {
        if (! Probe::enabled()) {
            return; // the benchmarks' app: no listener of its own
        }
        // Laravel's documented use of the worker loop: roll back what a job
        // left open. And, for the tests, hold every worker while the probe's
        // kqtest:hold key exists.
        Queue::looping(function () {
            while (DB::transactionLevel() > 0) {
                DB::rollBack();
            }
            if (Redis::connection('probe')->exists('kqtest:hold')) {
                return false;
            }
        });
        // The worker's own events, where this Laravel has them.
        foreach (['WorkerStarting', 'WorkerStopping', 'WorkerQueuePaused', 'WorkerQueueResumed'] as $name) {
            $class = 'Illuminate\\Queue\\Events\\'.$name;
            if (class_exists($class)) {
                Event::listen($class, function ($event) use ($name) {
                    Probe::record([
                        'kind' => 'worker',
                        'tag' => 'worker:'.$name,
                        'status' => $event->status ?? null,
                        'queue' => $event->queue ?? null,
                    ]);
                });
            }
        }
        // Record every worker event with the job it belongs to, so the same
        // scenario run by queue:work and by kqueue can be compared.
        foreach ([JobProcessing::class, JobProcessed::class, JobExceptionOccurred::class, JobFailed::class] as $class) {
            Event::listen($class, function ($event) use ($class) {
                Probe::record([
                    'kind' => 'event',
                    'event' => class_basename($class),
                    'tag' => Probe::tagOf($event->job),
                    'attempt' => $event->job->attempts(),
                    'exception' => isset($event->exception) ? get_class($event->exception) : null,
                ]);
            });
        }
    }
}
