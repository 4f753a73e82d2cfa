<?php

namespace App\Jobs;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use Illuminate\Support\Facades\Redis;

// Span records when it starts and when it ends in the probe's Redis list
// kqtest:spans, so a test can count how many ran at once. It runs for
// $seconds, or, held, until the test pushes to kqtest:go (at most 30 s).
class Span implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tag;

    public $seconds;

    public $held;

    public $timeout = 60;

    public function __construct($tag, $seconds, $held = false)
    {
        $this->tag = $tag;
        $this->seconds = $seconds;
        $this->held = $held;
    }

    public function handle()
    {
        $probe = Redis::connection('probe');
        $probe->rpush('kqtest:spans', json_encode(['tag' => $this->tag, 'edge' => 'start', 'at' => microtime(true), 'pid' => getmypid()]));
        if ($this->held) {
            $probe->blpop('kqtest:go', 30);
        } else {
            usleep((int) ($this->seconds * 1000000));
        }
        $probe->rpush('kqtest:spans', json_encode(['tag' => $this->tag, 'edge' => 'end', 'at' => microtime(true), 'pid' => getmypid()]));
    }
}
