<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\Jobs\RedisJob;
use Illuminate\Queue\SerializesModels;

// Introspects records what code that inspects its job sees: a RedisJob,
// its queue object, and the reserved copy with its attempts counted; or a
// DatabaseJob, or an SqsJob and its message; and its attempts.
class Introspects implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        $redisJob = $this->job instanceof RedisJob;
        $reserved = $redisJob ? json_decode($this->job->getReservedJob(), true) : null;
        Probe::record([
            'kind' => 'introspect',
            'tag' => $this->tag,
            'redis_job' => $redisJob,
            'queue_class' => $redisJob ? get_class($this->job->getRedisQueue()) : null,
            'reserved_attempts' => $reserved['attempts'] ?? null,
            'reserved_uuid_matches' => ($reserved['uuid'] ?? null) === $this->job->uuid(),
            'database_job' => $this->job instanceof \Illuminate\Queue\Jobs\DatabaseJob,
            'sqs_job' => $this->job instanceof \Illuminate\Queue\Jobs\SqsJob,
            'sqs_message_id_matches' => $this->job instanceof \Illuminate\Queue\Jobs\SqsJob
                && $this->job->getSqsJob()['MessageId'] === $this->job->getJobId() && $this->job->getJobId() !== null,
            'attempts' => $this->job->attempts(),
        ]);
        Probe::ran($this);
    }
}
