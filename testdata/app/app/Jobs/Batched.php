<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Batchable;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use RuntimeException;

// Batched is a job of a Bus::batch(): it does nothing once its batch is
// cancelled, and fails at its one try when its tag says so.
class Batched implements ShouldQueue
{
    use Batchable, Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tries = 1;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        if ($this->batch() && $this->batch()->cancelled()) {
            return;
        }
        Probe::ran($this);
        if (str_starts_with($this->tag, 'fail')) {
            throw new RuntimeException("{$this->tag} fails");
        }
    }
}
