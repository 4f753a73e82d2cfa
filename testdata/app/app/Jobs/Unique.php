<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Contracts\Queue\ShouldBeUnique;

// Unique holds a ShouldBeUnique lock from dispatch until it has run.
class Unique implements ShouldQueue, ShouldBeUnique
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public function __construct($tag)
    {
        $this->tag = $tag;
    }

    public function uniqueId()
    {
        return $this->tag;
    }

    public function handle()
    {
        Probe::ran($this);
    }
}
