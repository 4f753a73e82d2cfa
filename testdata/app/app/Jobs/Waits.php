<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Support\Facades\Redis;

// Waits runs until the test lets it go by pushing to kqtest:go (at most
// 30 s), so a test sees it running for as long as it needs, without timing.
class Waits implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $timeout = 60;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        Probe::ran($this);
        Redis::connection()->blpop('kqtest:go', 30);
    }
}
