<?php

namespace KQueue;

use Illuminate\Queue\Queue;
use Illuminate\Support\ServiceProvider;

/**
 * Registers the payload hook that marks ShouldBeIsolated jobs for kqueue,
 * and the kqueue:status, kqueue:run and kqueue:check commands. Composer
 * apps get it by package discovery (composer.json extra.laravel); others
 * list it in config/app.php's providers.
 */
class KQueueServiceProvider extends ServiceProvider
{
    public function register()
    {
        // Queue's payload hooks are static: registering once per app boot
        // is how Laravel expects it, and the hook is idempotent.
        Queue::createPayloadUsing([Payload::class, 'hook']);
    }

    public function boot()
    {
        if ($this->app->runningInConsole()) {
            $this->commands([
                Console\StatusCommand::class,
                Console\RunCommand::class,
                Console\CheckCommand::class,
            ]);
        }
    }
}
