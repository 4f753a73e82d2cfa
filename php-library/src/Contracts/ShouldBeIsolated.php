<?php

namespace KQueue\Contracts;

/**
 * A job that must always run isolated: in its own process and its own
 * cgroup, whatever its $isolated property or the config's [[rule]]s say.
 * Its memory and CPU limits still come from $maxMemory and $cpu, else the
 * rules, else [isolation].
 *
 * kqueue decides without running PHP: the service provider's payload hook
 * writes {"kqueue": {"isolated": true}} into the payload of every job (and
 * queued listener, mailable or notification) whose class implements this
 * interface.
 */
interface ShouldBeIsolated
{
}
