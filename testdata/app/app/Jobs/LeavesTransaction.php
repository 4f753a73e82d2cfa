<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Support\Facades\DB;

// LeavesTransaction begins a database transaction and never ends it: the
// app's Queue::looping listener rolls it back before the next job, as
// Laravel's documentation shows.
class LeavesTransaction implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function handle()
    {
        DB::beginTransaction();
        Probe::record(['kind' => 'transaction', 'tag' => $this->tag, 'level' => DB::transactionLevel()]);
        Probe::ran($this);
    }
}
