<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// Chatty prints to stdout and stderr and records the environment it sees.
class Chatty implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        echo "hello from {$this->tag} on stdout\n";
        fwrite(STDERR, "hello from {$this->tag} on stderr\n");
        $env = [];
        foreach (['NOTIFY_SOCKET', 'LISTEN_FDS', 'WATCHDOG_USEC', 'KQ_EXTRA'] as $name) {
            $env[$name] = getenv($name);
        }
        Probe::record(['kind' => 'env', 'tag' => $this->tag, 'env' => $env, 'user' => posix_geteuid()]);
        Probe::ran($this);
    }
}
