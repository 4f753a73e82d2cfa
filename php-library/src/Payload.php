<?php

namespace KQueue;

use KQueue\Contracts\ShouldBeIsolated;

/**
 * What the library writes into a job's payload for kqueue, so the Go side
 * decides without PHP: {"kqueue": {"isolated": true}} for a job whose class
 * implements ShouldBeIsolated. Other payloads are left as they are.
 */
final class Payload
{
    /** The payload key kqueue reads. */
    public const KEY = 'kqueue';

    /**
     * The Queue::createPayloadUsing callback: the keys to merge into the
     * payload Laravel is about to push.
     *
     * The class is the payload's data.commandName (a job) or its
     * displayName (a queued listener, mailable or notification, whose
     * command is Laravel's wrapper). Neither is unserialized: the class
     * names are enough.
     *
     * @param  string|null  $connection
     * @param  string|null  $queue
     * @param  array  $payload
     * @return array
     */
    public static function hook($connection, $queue, array $payload): array
    {
        foreach ([$payload['data']['commandName'] ?? null, $payload['displayName'] ?? null] as $class) {
            if (is_string($class) && $class !== '' && is_subclass_of($class, ShouldBeIsolated::class)) {
                return [self::KEY => ['isolated' => true]];
            }
        }

        return [];
    }
}
