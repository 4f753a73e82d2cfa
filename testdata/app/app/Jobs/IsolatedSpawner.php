<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// IsolatedSpawner starts `sleep 1000` in its own session (out of the job's
// process group), records its pid, and then runs past its timeout.
class IsolatedSpawner implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $isolated = true;

    public $timeout = 1;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        $pid = trim(shell_exec('setsid sleep 1000 > /dev/null 2>&1 & echo $!'));
        Probe::record(['kind' => 'child', 'tag' => $this->tag, 'pid' => (int) $pid, 'parent' => getmypid()]);
        Probe::ran($this);
        sleep(30);
    }
}
