<?php

namespace KQueue\Console;

/**
 * php artisan kqueue:status: a running instance's live counts, queue
 * depths, running jobs and last failures, as `kqueue status` prints them
 * (it asks the instance's control socket).
 */
class StatusCommand extends KQueueCommand
{
    protected $signature = 'kqueue:status '.self::INSTANCE.'
        {--json : print the raw JSON snapshot}';

    protected $description = 'Show a running kqueue instance: counts, queue depths, running jobs, last failures';

    public function handle()
    {
        try {
            $args = array_merge(['status'], $this->instance(), $this->option('json') ? ['--json'] : []);
        } catch (\InvalidArgumentException $e) {
            $this->error($e->getMessage());

            return 2;
        }

        return $this->passthru($args);
    }
}
