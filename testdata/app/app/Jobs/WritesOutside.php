<?php

namespace App\Jobs;

use App\Probe;
use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;

// WritesOutside tries to write where the app may not (its root, beside
// its code) and records what PHP said: under kqueue's sandbox only
// storage/, bootstrap/cache/ and [app] writable are writable.
class WritesOutside implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public function handle()
    {
        $path = base_path('kqueue-escape.txt');
        $error = null;
        set_error_handler(function ($no, $message) use (&$error) {
            $error = $message;

            return true;
        });
        $ok = file_put_contents($path, 'escaped') !== false;
        restore_error_handler();
        Probe::record(['kind' => 'outside', 'written' => $ok, 'error' => $error]);
        Probe::ran($this);
    }
}
