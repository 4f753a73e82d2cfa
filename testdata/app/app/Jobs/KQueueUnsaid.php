<?php

namespace App\Jobs;

use App\Probe;
use KQueue\Jobs\KQueueJob;

// KQueueUnsaid is PlainUnsaid written with the kqueue library's base class.
class KQueueUnsaid extends KQueueJob
{
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
