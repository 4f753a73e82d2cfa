<?php

// The PHP-only ceiling: how fast one warm Laravel process runs no-op jobs
// through Laravel's own Worker::process when nothing else is in the way —
// no queue I/O, no runtime. The payloads are read from the app's queue
// first (untimed); then each is wrapped in kqueue's recording Job (the one
// the pool workers use) and processed. Prints {"jobs":N,"seconds":S}.
//
//   php ceiling.php APP_PATH JOB_PHP FIRST COUNT

[$_, $appPath, $jobPHP, $first, $count] = $argv;
require $appPath.'/vendor/autoload.php';
require $jobPHP;
$app = require $appPath.'/bootstrap/app.php';
$app->make(Illuminate\Contracts\Console\Kernel::class)->bootstrap();

$payloads = $app['redis']->connection()->lrange('queues:default', (int) $first, (int) $first + (int) $count - 1);
$worker = $app->make('queue.worker');
$worker->setCache($app['cache']->driver());
$options = new Illuminate\Queue\WorkerOptions();

$start = hrtime(true);
foreach ($payloads as $raw) {
    $job = new KQueue\Worker\Job($app, $raw, 'redis', 'default');
    $worker->process('redis', $job, $options);
    if (! $job->isDeleted()) {
        fwrite(STDERR, "job not deleted: $raw\n");
        exit(1);
    }
}
echo json_encode(['jobs' => count($payloads), 'seconds' => (hrtime(true) - $start) / 1e9]), "\n";
