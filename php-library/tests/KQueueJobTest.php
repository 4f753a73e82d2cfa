<?php

namespace KQueue\Tests;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use KQueue\Jobs\KQueueJob;
use KQueue\Tests\Fixtures\EncodeVideo;
use KQueue\Tests\Fixtures\PayloadQueue;
use PHPUnit\Framework\TestCase;
use ReflectionClass;

class KQueueJobTest extends TestCase
{
    private const PROPERTIES = ['timeout' => '?int', 'maxMemory' => '?int', 'isolated' => '?bool', 'cpu' => '?int'];

    public function testIsAQueuedJobWithLaravelsTraits(): void
    {
        $this->assertTrue(is_subclass_of(KQueueJob::class, ShouldQueue::class));
        $this->assertTrue((new ReflectionClass(KQueueJob::class))->isAbstract());
        $traits = class_uses(KQueueJob::class);
        foreach ([Dispatchable::class, InteractsWithQueue::class, Queueable::class, SerializesModels::class] as $trait) {
            $this->assertContains($trait, $traits);
        }
    }

    // Every property is typed, public and null by default: "the config
    // decides". kqueue reads a null as not said, both from the payload and
    // from the class's defaults.
    public function testPropertiesAreTypedAndLeaveTheChoiceToTheConfig(): void
    {
        $class = new ReflectionClass(KQueueJob::class);
        $defaults = $class->getDefaultProperties();
        foreach (self::PROPERTIES as $name => $type) {
            $property = $class->getProperty($name);
            $this->assertTrue($property->isPublic(), $name);
            $this->assertSame($type, (string) $property->getType(), $name);
            $this->assertArrayHasKey($name, $defaults);
            $this->assertNull($defaults[$name], $name);
        }
    }

    // kqueue's warm worker learns a class's declared defaults by reflection
    // (Laravel 10+ leaves them out of the payload): a subclass's typed
    // redeclarations are what it sees, and the nulls it inherits are not
    // scalars, so they say nothing.
    public function testSubclassDefaultsAreWhatKqueueReads(): void
    {
        $defaults = (new ReflectionClass(EncodeVideo::class))->getDefaultProperties();
        $seen = [];
        foreach (['isolated', 'maxMemory', 'cpu'] as $name) {
            if (array_key_exists($name, $defaults) && is_scalar($defaults[$name])) {
                $seen[$name] = $defaults[$name];
            }
        }
        $this->assertSame(['isolated' => true, 'maxMemory' => 512], $seen);
    }

    // Laravel 8 serializes every property into data.command; the timeout
    // is also a top-level payload field, null when the config decides.
    public function testPayloadCarriesThePropertiesAndTheTimeout(): void
    {
        $job = new EncodeVideo('a.mp4');
        $payload = (new PayloadQueue)->payloadFor($job);
        $this->assertSame(EncodeVideo::class, $payload['data']['commandName']);
        $this->assertNull($payload['timeout']);
        $command = $payload['data']['command'];
        $this->assertStringContainsString('s:8:"isolated";b:1;', $command);
        $this->assertStringContainsString('s:9:"maxMemory";i:512;', $command);

        $job->timeout = 90;
        $this->assertSame(90, (new PayloadQueue)->payloadFor($job)['timeout']);

        $copy = unserialize($command);
        $this->assertInstanceOf(EncodeVideo::class, $copy);
        $this->assertSame([true, 512, null, null], [$copy->isolated, $copy->maxMemory, $copy->cpu, $copy->timeout]);
    }
}
