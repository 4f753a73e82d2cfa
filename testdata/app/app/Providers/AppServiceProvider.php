<?php

namespace App\Providers;

use App\Probe;
use Illuminate\Queue\Events\JobExceptionOccurred;
use Illuminate\Queue\Events\JobFailed;
use Illuminate\Queue\Events\JobProcessed;
use Illuminate\Queue\Events\JobProcessing;
use Illuminate\Support\Facades\Event;
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
            return;
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
