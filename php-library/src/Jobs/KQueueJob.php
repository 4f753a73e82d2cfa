<?php

namespace KQueue\Jobs;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

/**
 * An optional base for queued jobs that say how kqueue runs them. A plain
 * ShouldQueue job with the same public properties runs the same way: this
 * class only adds the traits every job uses, the types and the docs.
 *
 * Each property's default, null, means "the config decides": [job] timeout,
 * then [[rule]]s, then [isolation]. A subclass sets its own default by
 * redeclaring a property with the same type (PHP requires it), or sets it
 * per job in its constructor:
 *
 *     class EncodeVideo extends KQueueJob
 *     {
 *         public ?bool $isolated = true;
 *         public ?int $maxMemory = 512;
 *         public ?int $cpu = 50;
 *         public ?int $timeout = 600;
 *     }
 *
 * Laravel 8 serializes every property into the payload; Laravel 10 and later
 * only those that differ from the class's declared defaults, and kqueue then
 * reads the declared defaults from the class itself.
 */
abstract class KQueueJob implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    /**
     * Seconds the job may run. kqueue kills it at the deadline (every
     * process it started too) and fails or releases it by Laravel's rules.
     * null: [job] timeout, or a matching [[rule]]'s timeout.
     *
     * @var int|null
     */
    public ?int $timeout = null;

    /**
     * Memory limit in MB, enforced by the kernel on the job's own cgroup
     * (swap off): over it the job is killed and failed with "exceeded its
     * memory limit". Setting it makes the job isolated unless $isolated is
     * false. null: the matching [[rule]]'s memory, else [isolation] memory.
     *
     * @var int|null
     */
    public ?int $maxMemory = null;

    /**
     * true: the job runs isolated, in its own process and cgroup. false: it
     * runs in the warm pool, even where a [[rule]] would isolate it. null:
     * the [[rule]]s decide (the warm pool when none matches).
     *
     * @var bool|null
     */
    public ?bool $isolated = null;

    /**
     * CPU limit of an isolated job, in percent of one core (50: half a core,
     * 200: two cores). Setting it makes the job isolated unless $isolated is
     * false. null: the matching [[rule]]'s cpu, else [isolation] cpu.
     *
     * @var int|null
     */
    public ?int $cpu = null;
}
