<?php

// The job classes of kqueue's PHP worker, loaded by worker.php once the
// app's autoloader can resolve Laravel's classes.

namespace KQueue\Worker;

use Illuminate\Queue\Jobs\Job as BaseJob;
use RuntimeException;

// Jobs makes the job object the worker hands to Laravel's Worker::process:
// for a Redis connection a RedisJob (so instanceof checks, getRedisQueue()
// and getReservedJob() work as under queue:work), for a database one a
// DatabaseJob of the row the poller reserved, for an SQS one an SqsJob of
// the message it received, for any other a plain Job; each records
// delete/release/fail for the dispatcher instead of applying them to the
// queue.
final class Jobs
{
    // factory returns fn (string $raw, string $queue, ?array $row, ?array
    // $sqs) => the job. Making the connection's queue object connects to
    // nothing.
    public static function factory($app, string $connection): \Closure
    {
        try {
            $queue = $app['queue']->connection($connection);
        } catch (\Throwable $e) {
            $queue = null; // the worker fails the job with Laravel's own error later
        }
        if ($queue instanceof \Illuminate\Queue\RedisQueue) {
            return function (string $raw, string $name, ?array $row, ?array $sqs) use ($app, $queue, $connection) {
                return new RedisJob($app, $queue, $raw, $connection, $name);
            };
        }
        if ($queue instanceof \Illuminate\Queue\DatabaseQueue) {
            return function (string $raw, string $name, ?array $row, ?array $sqs) use ($app, $queue, $connection) {
                return new DatabaseJob($app, $queue, $raw, $row ?? [], $connection, $name);
            };
        }
        if ($queue instanceof \Illuminate\Queue\SqsQueue) {
            return function (string $raw, string $name, ?array $row, ?array $sqs) use ($app, $queue, $connection) {
                return new SqsJob($app, $queue->getSqs(), [
                    'MessageId' => $sqs['MessageId'] ?? null,
                    'ReceiptHandle' => $sqs['ReceiptHandle'] ?? null,
                    'Body' => $raw,
                    'Attributes' => ['ApproximateReceiveCount' => (string) ($sqs['ApproximateReceiveCount'] ?? 1)],
                ], $connection, $sqs['QueueUrl'] ?? $queue->getQueue($name));
            };
        }

        return function (string $raw, string $name, ?array $row, ?array $sqs) use ($app, $connection) {
            $job = new Job($app, $raw, $connection, $name);
            if ($sqs !== null) {
                // An SQS connection whose client (aws/aws-sdk-php) is
                // missing: the attempts are still SQS's receive count.
                $job->receives = (int) ($sqs['ApproximateReceiveCount'] ?? 1);
            }

            return $job;
        };
    }
}

// RedisJob is Laravel's RedisJob whose delete and release are recorded for
// the dispatcher (which applies them to Redis with the rest of kqueue's
// bookkeeping) instead of being sent to Redis from here.
final class RedisJob extends \Illuminate\Queue\Jobs\RedisJob
{
    public $releaseAt = null;

    public function __construct($container, $redis, string $raw, string $connectionName, string $queue)
    {
        // The reserved copy is made when asked for (getReservedJob).
        parent::__construct($container, $redis, $raw, null, $connectionName, $queue);
    }

    // payload is decoded once (Laravel decodes the body on every call).
    public function payload()
    {
        return $this->decoded ?? json_decode($this->job, true);
    }

    // getReservedJob is the job as Laravel's pop reserves it: attempts
    // counted (encoded by PHP here, by Redis's Lua there).
    public function getReservedJob()
    {
        if ($this->reserved === null) {
            $reserved = $this->payload();
            $reserved['attempts'] = ($reserved['attempts'] ?? 0) + 1;
            $this->reserved = json_encode($reserved);
        }

        return $this->reserved;
    }

    public function delete()
    {
        BaseJob::delete(); // recorded: no ZREM from here
    }

    public function release($delay = 0)
    {
        BaseJob::release($delay); // recorded: no Lua from here
        $this->releaseAt = $this->availableAt($delay);
    }
}

// DatabaseJob is Laravel's DatabaseJob on the row the poller reserved, as
// DatabaseQueue's pop marks it (attempts counted, reserved_at set), whose
// delete and release are recorded for the dispatcher (which applies them
// to the jobs table as DatabaseQueue would) instead of being sent from
// here.
final class DatabaseJob extends \Illuminate\Queue\Jobs\DatabaseJob
{
    private $decoded;
    public $releaseAt = null;

    public function __construct($container, $database, string $raw, array $row, string $connectionName, string $queue)
    {
        $record = new \Illuminate\Queue\Jobs\DatabaseJobRecord((object) [
            'id' => $row['id'] ?? null,
            'queue' => $queue,
            'payload' => $raw,
            'attempts' => ($row['attempts'] ?? 0) + 1,
            'reserved_at' => $row['reserved_at'] ?? null,
            'available_at' => $row['available_at'] ?? null,
            'created_at' => $row['created_at'] ?? null,
        ]);
        parent::__construct($container, $database, $record, $connectionName, $queue);
    }

    // payload is decoded once (Laravel decodes the body on every call).
    public function payload()
    {
        return $this->decoded ?? ($this->decoded = json_decode($this->job->payload, true));
    }

    public function delete()
    {
        BaseJob::delete(); // recorded: no DELETE from here
    }

    public function release($delay = 0)
    {
        BaseJob::release($delay); // recorded: no DELETE and INSERT from here
        $this->releaseAt = $this->availableAt($delay);
    }
}

// SqsJob is Laravel's SqsJob on the message the poller received, whose
// delete and release are recorded for the dispatcher (which deletes the
// message, or changes its visibility to the release's delay, as SqsJob
// would) instead of being sent to SQS from here.
final class SqsJob extends \Illuminate\Queue\Jobs\SqsJob
{
    private $decoded;
    public $releaseAt = null;

    // payload is decoded once (Laravel decodes the body on every call).
    public function payload()
    {
        return $this->decoded ?? ($this->decoded = json_decode($this->getRawBody(), true));
    }

    public function delete()
    {
        BaseJob::delete(); // recorded: no DeleteMessage from here
    }

    public function release($delay = 0)
    {
        BaseJob::release($delay); // recorded: no ChangeMessageVisibility from here
        $this->releaseAt = $this->availableAt($delay);
    }
}

// Job is a reserved queue job whose delete/release/fail are recorded for the
// dispatcher instead of being applied to the queue.
final class Job extends BaseJob implements \Illuminate\Contracts\Queue\Job
{
    private $raw;
    private $decoded;
    public $releaseAt = null;
    public $receives = null; // SQS's receive count: the attempts, when set

    public function __construct($container, string $raw, string $connectionName, string $queue)
    {
        $this->container = $container;
        $this->raw = $raw;
        $this->connectionName = $connectionName;
        $this->queue = $queue;
        $this->decoded = $this->payload();
    }

    // payload is decoded once; Laravel's Job decodes the body on every call
    // (maxTries(), backoff(), timeout(), … each call it).
    public function payload()
    {
        return $this->decoded ?? ($this->decoded = json_decode($this->raw, true));
    }

    public function getRawBody()
    {
        return $this->raw;
    }

    public function getJobId()
    {
        return $this->decoded['id'] ?? null;
    }

    public function attempts()
    {
        return $this->receives ?? ($this->decoded['attempts'] ?? 0) + 1;
    }

    public function release($delay = 0)
    {
        parent::release($delay);
        $this->releaseAt = $this->availableAt($delay);
    }
}

// JobCrashedException fails a job whose worker process died under it.
class JobCrashedException extends RuntimeException
{
}

// IsolationFailedException fails a job kqueue could not start inside its
// cgroup: it never ran.
class IsolationFailedException extends RuntimeException
{
}

// UnknownJobClassException fails a job whose class the app does not have.
class UnknownJobClassException extends RuntimeException
{
}

// MemoryLimitExceededException fails a job the kernel killed for going over
// its memory limit.
class MemoryLimitExceededException extends RuntimeException
{
}
