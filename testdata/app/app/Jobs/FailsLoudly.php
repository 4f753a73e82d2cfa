<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use RuntimeException;

// FailsLoudly fails at its one try with an error of $bytes bytes, as a
// failed bulk insert's exception quotes its SQL.
class FailsLoudly implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tries = 1;

    public $tag;

    public $bytes;

    public function __construct($tag, $bytes)
    {
        $this->tag = $tag;
        $this->bytes = $bytes;
    }

    public function handle()
    {
        Probe::ran($this);
        $sql = 'insert into rows values '.str_repeat("(1, 'a row'), ", intdiv($this->bytes, 14));
        throw new RuntimeException("{$this->tag} failed: $sql");
    }
}
