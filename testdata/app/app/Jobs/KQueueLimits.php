<?php

namespace App\Jobs;

use App\Probe;
use KQueue\Jobs\KQueueJob;

// KQueueLimits is PlainLimits written with the kqueue library's base class.
class KQueueLimits extends KQueueJob
{
    public ?bool $isolated = true;

    public ?int $maxMemory = 96;

    public ?int $cpu = 50;

    public ?int $timeout = 30;

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
