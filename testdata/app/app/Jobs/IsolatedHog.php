<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// IsolatedHog asks for isolation with a 64 MB limit, then allocates 300 MB.
// A plain ShouldQueue job: kqueue reads its properties, no base class needed.
class IsolatedHog implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $isolated = true;

    public $maxMemory = 64;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        Probe::ran($this);
        $hog = str_repeat('x', 300 << 20);
        Probe::record(['kind' => 'survived', 'tag' => $this->tag, 'bytes' => strlen($hog)]);
    }

    public function failed($e)
    {
        Probe::record(['kind' => 'failed-hook', 'tag' => $this->tag, 'exception' => $e ? get_class($e) : null, 'message' => $e ? $e->getMessage() : null]);
    }
}
