<?php

namespace KQueue\Tests\Fixtures;

use Illuminate\Container\Container;
use Illuminate\Queue\Queue;

// PayloadQueue is a queue that only makes payloads, with Laravel's own
// createPayload and its payload hooks.
class PayloadQueue extends Queue
{
    public function __construct()
    {
        $this->setContainer(new Container);
        $this->setConnectionName('redis');
    }

    public function payloadFor($job): array
    {
        return json_decode($this->createPayload($job, 'default'), true, 512, JSON_THROW_ON_ERROR);
    }
}
