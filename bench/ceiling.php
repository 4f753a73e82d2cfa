<?php

// The PHP-only ceilings: how fast one warm Laravel process runs no-op jobs
// when nothing else is in the way — no queue I/O, no runtime. The payloads
// are read from the app's queue first (untimed), then run in one of two
// ways, chosen by MODE:
//
//   process  each wrapped in kqueue's recording Job (the one the pool
//            workers use, which decodes the payload once) and handed to
//            Worker::process — the issue's ceiling, and the strictest.
//   loop     what `queue:work`'s own loop does per job, minus its Redis
//            round trips: Laravel's resetScope, then Worker::process on
//            Laravel's RedisJob (which decodes the payload on every
//            payload() call), its delete kept off Redis.
//
// Prints {"jobs":N,"seconds":S}.
//
//   php ceiling.php APP_PATH JOB_PHP FIRST COUNT MODE

[$_, $appPath, $jobPHP, $first, $count, $mode] = $argv;
require $appPath.'/vendor/autoload.php';
require $jobPHP;
$app = require $appPath.'/bootstrap/app.php';
$app->make(Illuminate\Contracts\Console\Kernel::class)->bootstrap();

// A RedisJob whose delete is recorded, not sent to Redis.
final class OfflineRedisJob extends Illuminate\Queue\Jobs\RedisJob
{
    public function delete()
    {
        Illuminate\Queue\Jobs\Job::delete();
    }
}

$payloads = $app['redis']->connection()->lrange('queues:default', (int) $first, (int) $first + (int) $count - 1);
$worker = $app->make('queue.worker');
$worker->setCache($app['cache']->driver());
$options = new Illuminate\Queue\WorkerOptions();
$queue = $app['queue']->connection('redis');
$resetScope = (function () {
    return $this->resetScope ?? function () {
    };
})->call($worker);

$start = hrtime(true);
foreach ($payloads as $raw) {
    if ($mode === 'loop') {
        $resetScope();
        $job = new OfflineRedisJob($app, $queue, $raw, $raw, 'redis', 'default');
    } else {
        $job = new KQueue\Worker\Job($app, $raw, 'redis', 'default');
    }
    $worker->process('redis', $job, $options);
    if (! $job->isDeleted()) {
        fwrite(STDERR, "job not deleted: $raw\n");
        exit(1);
    }
}
echo json_encode(['jobs' => count($payloads), 'seconds' => (hrtime(true) - $start) / 1e9]), "\n";
