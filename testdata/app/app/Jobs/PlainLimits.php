<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// PlainLimits says how it runs with plain properties; KQueueLimits says the
// same by extending KQueueJob. kqueue must run both the same way.
class PlainLimits implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $isolated = true;

    public $maxMemory = 96;

    public $cpu = 50;

    public $timeout = 30;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        Probe::ran($this);
    }
}
