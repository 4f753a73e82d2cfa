<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Support\Facades\Redis;

// Due is a delayed job that records how late it ran: the probe server's
// clock (TIME) minus $due, in seconds, as the note of its run. The probe's
// clock is the one clock every test host shares, whatever the host's own
// says.
class Due implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public $due;

    public function __construct($tag, $due)
    {
        $this->tag = $tag;
        $this->due = $due;
    }

    public function handle()
    {
        [$seconds, $micros] = Redis::connection('probe')->time();
        Probe::ran($this, sprintf('%.3f', $seconds + $micros / 1e6 - $this->due));
    }
}
