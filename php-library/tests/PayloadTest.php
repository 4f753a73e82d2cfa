<?php

namespace KQueue\Tests;

use Illuminate\Events\CallQueuedListener;
use Illuminate\Queue\Queue;
use KQueue\Payload;
use KQueue\Tests\Fixtures\EncodeVideo;
use KQueue\Tests\Fixtures\IsolatedListener;
use KQueue\Tests\Fixtures\PayloadQueue;
use KQueue\Tests\Fixtures\Untrusted;
use PHPUnit\Framework\TestCase;

class PayloadTest extends TestCase
{
    protected function setUp(): void
    {
        Queue::createPayloadUsing([Payload::class, 'hook']);
    }

    protected function tearDown(): void
    {
        Queue::createPayloadUsing(null);
    }

    public function testMarksShouldBeIsolatedJobs(): void
    {
        $payload = (new PayloadQueue)->payloadFor(new Untrusted);
        $this->assertSame(['isolated' => true], $payload['kqueue']);
        // The mark is a top-level key next to Laravel's own.
        $this->assertSame(Untrusted::class, $payload['data']['commandName']);
    }

    public function testLeavesOtherJobsAsTheyAre(): void
    {
        $queue = new PayloadQueue;
        $this->assertArrayNotHasKey('kqueue', $queue->payloadFor(new EncodeVideo('a.mp4')));
        $this->assertArrayNotHasKey('kqueue', $queue->payloadFor('App\\Handlers\\Legacy@handle'));
        $this->assertArrayNotHasKey('kqueue', $queue->payloadFor('App\\Missing\\Class'));
    }

    // A queued listener's command is Laravel's wrapper: its displayName
    // names the listener.
    public function testMarksShouldBeIsolatedListeners(): void
    {
        $payload = (new PayloadQueue)->payloadFor(new CallQueuedListener(IsolatedListener::class, 'handle', [null]));
        $this->assertSame(CallQueuedListener::class, $payload['data']['commandName']);
        $this->assertSame(['isolated' => true], $payload['kqueue']);
    }

    public function testHookAlone(): void
    {
        $this->assertSame([], Payload::hook('redis', 'default', []));
        $this->assertSame([], Payload::hook('redis', 'default', ['data' => ['commandName' => ['not', 'a', 'string']]]));
        $this->assertSame(['kqueue' => ['isolated' => true]], Payload::hook(null, null, ['displayName' => Untrusted::class]));
    }
}
