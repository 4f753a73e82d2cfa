<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;


// Sleeps sleeps for $seconds; with a short $timeout it times out.
class Sleeps implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public $tries = 1;

    public $timeout;

    public $seconds;

    public function __construct($tag, $seconds, $timeout = null, $tries = 1)
    {
        $this->tag = $tag;
        $this->seconds = $seconds;
        $this->timeout = $timeout;
        $this->tries = $tries;
    }

    public function handle()
    {
        Probe::ran($this);
        usleep((int) ($this->seconds * 1000000));
    }

    public function failed($e)
    {
        Probe::record(["kind" => "failed-hook", "tag" => $this->tag, "exception" => $e ? get_class($e) : null, "message" => $e ? $e->getMessage() : null]);
    }
}
