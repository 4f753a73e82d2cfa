<?php

namespace App\Jobs;

use Illuminate\Bus\Queueable;
use Illuminate\Contracts\Queue\ShouldQueue;
use Illuminate\Foundation\Bus\Dispatchable;
use Illuminate\Queue\InteractsWithQueue;
use Illuminate\Queue\SerializesModels;
use RuntimeException;

// Hostile carries markup wherever a job's data can reach a page: its
// display name, its output and its exception. A console must show it as
// text.
class Hostile implements ShouldQueue
{
    use Dispatchable, InteractsWithQueue, Queueable, SerializesModels;

    public $tries = 1;

    public function displayName()
    {
        return '<script>document.title="pwned"</script>Hostile';
    }

    public function handle()
    {
        echo "<script>document.title='pwned by output'</script>\n";
        throw new RuntimeException('<img src=x onerror="document.title=\'pwned by exception\'">');
    }
}
