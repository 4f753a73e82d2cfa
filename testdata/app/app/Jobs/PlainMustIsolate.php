<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use KQueue\Contracts\ShouldBeIsolated;

// PlainMustIsolate must always run isolated: the marker interface beats its
// own $isolated = false. KQueueMustIsolate is the same on KQueueJob.
class PlainMustIsolate implements ShouldQueue, ShouldBeIsolated
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $isolated = false;

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
