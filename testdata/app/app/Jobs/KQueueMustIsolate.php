<?php

namespace App\Jobs;

use App\Probe;
use KQueue\Contracts\ShouldBeIsolated;
use KQueue\Jobs\KQueueJob;

// KQueueMustIsolate is PlainMustIsolate written with the kqueue library's
// base class.
class KQueueMustIsolate extends KQueueJob implements ShouldBeIsolated
{
    public ?bool $isolated = false;

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
