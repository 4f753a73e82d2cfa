<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// Blurts prints a line of $bytes bytes on stdout (a dump of a large
// array, say), then a short one.
class Blurts implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public $bytes;

    public function __construct($tag, $bytes)
    {
        $this->tag = $tag;
        $this->bytes = $bytes;
    }

    public function handle()
    {
        echo str_repeat('x', $this->bytes)."\n";
        echo "after {$this->tag}\n";
        Probe::ran($this);
    }
}
