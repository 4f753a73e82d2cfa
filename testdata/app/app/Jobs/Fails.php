<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use RuntimeException;

// Fails throws on every attempt; its failed() hook records the failure.
class Fails implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public $tries = 3;

    public $backoff = [0, 1];

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        Probe::ran($this);
        throw new RuntimeException("{$this->tag} failed on attempt ".$this->attempts());
    }

    public function failed($e)
    {
        Probe::record(["kind" => "failed-hook", "tag" => $this->tag, "exception" => $e ? get_class($e) : null]);
    }
}
