<?php

namespace KQueue\Console;

use Symfony\Component\Console\Output\OutputInterface;

/**
 * php artisan kqueue:run: `kqueue run` in the foreground, the development
 * loop (like queue:work). The artisan process becomes kqueue (exec), so ^C
 * and SIGTERM reach kqueue itself: running jobs finish, then it exits 0.
 */
class RunCommand extends KQueueCommand
{
    protected $signature = 'kqueue:run '.self::INSTANCE.'
        {--stop-when-empty : exit once no job is ready or running}';

    protected $description = 'Run kqueue for this app in the foreground, like queue:work';

    public function handle()
    {
        try {
            $args = array_merge(['run'], $this->instance(), $this->option('stop-when-empty') ? ['--stop-when-empty'] : []);
            $binary = $this->binary();
        } catch (\InvalidArgumentException $e) {
            $this->error($e->getMessage());

            return 2;
        } catch (\RuntimeException $e) {
            $this->errorOutput()->writeln('kqueue: '.$e->getMessage(), OutputInterface::OUTPUT_RAW);

            return 1;
        }
        if (! function_exists('pcntl_exec')) {
            // No pcntl: run it as a child; ^C still reaches both.
            return $this->passthru($args);
        }
        pcntl_exec($binary, $args);
        $this->errorOutput()->writeln('kqueue: exec '.$binary.': '.pcntl_strerror(pcntl_get_last_error()), OutputInterface::OUTPUT_RAW);

        return 1;
    }
}
