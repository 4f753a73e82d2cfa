<?php

namespace App\Jobs;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Support\Facades\Redis;
use RuntimeException;

// FailsFirstRun fails the first time it runs, at its one try, and succeeds
// after that: a failed job that a retry (queue:retry) mends. Its runs are
// counted in the probe's Redis, "kqtest:firstrun".
class FailsFirstRun implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tries = 1;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        if (Redis::connection('probe')->hincrby('kqtest:firstrun', $this->tag, 1) === 1) {
            throw new RuntimeException("{$this->tag} fails its first run");
        }
    }
}
