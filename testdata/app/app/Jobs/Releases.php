<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;


// Releases calls $this->release() on its first attempt and succeeds on the next.
class Releases implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public $tries = 2;

    public $delaySeconds;

    public function __construct($tag, $delaySeconds = 1)
    {
        $this->tag = $tag;
        $this->delaySeconds = $delaySeconds;
    }

    public function handle()
    {
        Probe::ran($this);
        if ($this->attempts() < 2) {
            $this->release($this->delaySeconds);
        }
    }
}
