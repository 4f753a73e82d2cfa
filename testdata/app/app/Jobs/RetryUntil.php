<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use RuntimeException;

// RetryUntil is retried by time, not by $tries: it fails once, then succeeds.
// With until in the past it is failed before it runs.
class RetryUntil implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public $tries = 1;

    public $until;

    public function __construct($tag, $until)
    {
        $this->tag = $tag;
        $this->until = $until;
    }

    public function retryUntil()
    {
        return $this->until;
    }

    public function handle()
    {
        Probe::ran($this);
        if ($this->attempts() < 2) {
            throw new RuntimeException("{$this->tag}: first attempt fails");
        }
    }
}
