<?php

namespace App;

use Illuminate\Contracts\Queue\Job;
use Illuminate\Support\Facades\Redis;
use Throwable;

// Probe records what happened to each job in the Redis list "kqtest:log" so a
// test can compare two runners. It is off unless KQ_PROBE=1.
class Probe
{
    public static function enabled(): bool
    {
        return env('KQ_PROBE') === '1';
    }

    public static function record(array $entry): void
    {
        if (! static::enabled()) {
            return;
        }
        Redis::connection('probe')->rpush('kqtest:log', json_encode($entry, JSON_UNESCAPED_SLASHES));
    }

    // ran records one execution of a job's handle().
    public static function ran($command, string $note = ''): void
    {
        if (! static::enabled()) {
            return;
        }
        $tag = $command->tag ?? get_class($command);
        Redis::connection('probe')->hincrby('kqtest:runs', $tag, 1);
        static::record([
            'kind' => 'run',
            'tag' => $tag,
            'attempt' => $command->job ? $command->job->attempts() : null,
            'note' => $note,
        ]);
    }

    // tagOf names a queued job by its command's $tag, else by its displayName.
    public static function tagOf(Job $job): string
    {
        $payload = $job->payload();
        try {
            $command = $payload['data']['command'] ?? '';
            if (strncmp($command, 'O:', 2) !== 0) {
                $command = app('encrypter')->decrypt($command);
            }
            $object = unserialize($command);
            if (is_object($object) && isset($object->tag)) {
                return $object->tag;
            }
        } catch (Throwable $e) {
        }

        return $payload['displayName'] ?? '?';
    }
}
