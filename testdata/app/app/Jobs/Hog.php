<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// Hog keeps $megabytes of memory in its process after it returns: a leak.
class Hog implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public static $kept = [];

    public $tag;

    public $megabytes;

    public function __construct($tag, $megabytes)
    {
        $this->tag = $tag;
        $this->megabytes = $megabytes;
    }

    public function handle()
    {
        static::$kept[] = str_repeat('x', $this->megabytes << 20);
        Probe::ran($this);
    }
}
