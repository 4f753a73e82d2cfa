<?php

namespace App\Jobs;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Support\Facades\Redis;

// Stamp records how long it waited from dispatch() to the start of handle()
// (the pickup latency benchmark), in the probe's Redis list kqtest:pickup.
class Stamp implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $sentAt;

    public function __construct($sentAt)
    {
        $this->sentAt = $sentAt;
    }

    public function handle()
    {
        Redis::connection('probe')->rpush('kqtest:pickup', microtime(true) - $this->sentAt);
    }
}
