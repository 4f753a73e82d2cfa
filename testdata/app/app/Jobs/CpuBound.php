<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// CpuBound spins for a second of wall time, isolated, allowed 20% of a core.
class CpuBound implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $isolated = true;

    public $cpu = 20;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        $end = microtime(true) + 1.0;
        for ($x = 0; microtime(true) < $end; $x++) {
        }
        Probe::ran($this);
    }
}
