<?php

// The job classes of kqueue's PHP worker, loaded by worker.php once the
// app's autoloader can resolve Laravel's classes.

namespace KQueue\Worker;

use Illuminate\Queue\Jobs\Job as BaseJob;
use RuntimeException;

// Job is a reserved queue job whose delete/release/fail are recorded for the
// dispatcher instead of being applied to Redis.
final class Job extends BaseJob implements \Illuminate\Contracts\Queue\Job
{
    private $raw;
    private $decoded;
    public $releaseAt = null;

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
        return ($this->decoded['attempts'] ?? 0) + 1;
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
