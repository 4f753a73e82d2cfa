<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// IsolatedSleeper runs isolated for a moment and records when.
class IsolatedSleeper implements ShouldQueue
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
        $start = microtime(true);
        usleep(300000);
        Probe::record(['kind' => 'span', 'tag' => $this->tag, 'start' => $start, 'end' => microtime(true)]);
        Probe::ran($this);
    }
}
