<?php

namespace KQueue\Tests\Fixtures;

use Illuminate\Contracts\Queue\ShouldQueue;
use KQueue\Contracts\ShouldBeIsolated;

class IsolatedListener implements ShouldQueue, ShouldBeIsolated
{
    public function handle($event)
    {
    }
}
