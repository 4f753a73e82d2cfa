<?php

namespace KQueue\Console;

/**
 * php artisan kqueue:check: `kqueue check`, which validates the config and
 * the app behind it (Redis reachable, the app boots) and says what to fix.
 */
class CheckCommand extends KQueueCommand
{
    protected $signature = 'kqueue:check '.self::INSTANCE;

    protected $description = 'Check a kqueue config and the app behind it';

    public function handle()
    {
        try {
            $args = array_merge(['check'], $this->instance());
        } catch (\InvalidArgumentException $e) {
            $this->error($e->getMessage());

            return 2;
        }

        return $this->passthru($args);
    }
}
