<?php

namespace KQueue\Tests\Fixtures;

use KQueue\Jobs\KQueueJob;

class EncodeVideo extends KQueueJob
{
    public ?bool $isolated = true;

    public ?int $maxMemory = 512;

    public $file;

    public function __construct($file)
    {
        $this->file = $file;
    }

    public function handle()
    {
    }
}
