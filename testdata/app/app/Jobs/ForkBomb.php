<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// ForkBomb starts as many processes as it can.
class ForkBomb implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $isolated = true;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        Probe::ran($this);
        shell_exec('for i in $(seq 2000); do sleep 60 </dev/null >/dev/null 2>&1 & done 2>/dev/null');
        Probe::record(['kind' => 'bomb-done', 'tag' => $this->tag]);
    }
}
