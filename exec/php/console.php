<?php

// kqueue's hand into a Laravel app for its console (kqueue web): what only
// the app itself can do right — its failed jobs through its own failer,
// retries through its own queue:retry, pauses and restarts through its own
// cache. kqueue pipes it into `php` in the app's folder, as appconfig.php;
// it boots the app once, does one operation, and writes one JSON object on
// fd 3. The operation comes on fd 4, as JSON:
//
//   {"op":"failed"}                      → {"failed":[{"id","uuid","connection","queue","name",
//                                              "exception","failed_at","payload"}, …]}
//   {"op":"retry","ids":["…", …]}        → {"output":"…"}   php artisan queue:retry IDS
//   {"op":"forget","ids":["…", …]}       → {"output":"…"}   php artisan queue:forget ID, each
//   {"op":"restart"}                     → {"output":"…"}   php artisan queue:restart
//   {"op":"pause"|"resume","connection","queue"} → {"ok":true}  QueueManager::pause / resume
//   {"op":"paused","connection","queues":[…]}    → {"paused":[…], "pausable":bool}
//   {"op":"batches","before":"…"|null}   → {"batches":[batch, …]}   the 50 newest (before an id)
//   {"op":"batch","id"}                  → {"batch":batch|null}
//   {"op":"cancel","id"}                 → {"ok":true}          Batch::cancel()
//   {"op":"retry-batch","id"}            → {"output":"…"}       php artisan queue:retry-batch ID
//
// where batch is {"id","name","total","pending","failed","processed","progress",
// "failed_job_ids":[…],"created_at","cancelled_at","finished_at"} (times: Unix seconds or null).
//
// or {"error":"…"}. Environment: KQUEUE_APP_PATH (required).

namespace KQueue\Console;

use Throwable;

$out = fopen('php://fd/3', 'w');
$send = function (array $msg) use ($out) {
    fwrite($out, json_encode($msg, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR)."\n");
    fflush($out);
};

try {
    $path = getenv('KQUEUE_APP_PATH');
    require $path.'/vendor/autoload.php';
    $app = require $path.'/bootstrap/app.php';
    $kernel = $app->make(\Illuminate\Contracts\Console\Kernel::class);
    $kernel->bootstrap();
    $req = json_decode((string) file_get_contents('php://fd/4'), true);
    $op = is_array($req) ? ($req['op'] ?? '') : '';
    $manager = $app['queue'];

    // str is a value as text: a payload is the app's data, any shape.
    $str = function ($v) {
        return is_scalar($v) ? (string) $v : json_encode($v);
    };

    // artisan runs one of the app's own commands and returns what it said.
    $artisan = function (string $command, array $args) use ($kernel) {
        $code = $kernel->call($command, $args);
        $said = trim($kernel->output());
        if ($code !== 0) {
            throw new \RuntimeException("php artisan $command failed (exit $code): $said");
        }

        return $said;
    };

    switch ($op) {
        case 'failed':
            $list = [];
            foreach ($app['queue.failer']->all() as $row) {
                $row = (array) $row;
                $payload = json_decode($row['payload'] ?? '', true);
                $list[] = [
                    'id' => (string) ($row['id'] ?? ''), // the failer's own id: the uuid for database-uuids
                    'uuid' => $str(is_array($payload) ? ($payload['uuid'] ?? '') : ''),
                    'connection' => $str($row['connection'] ?? ''),
                    'queue' => $str($row['queue'] ?? ''),
                    'name' => $str(is_array($payload) ? ($payload['displayName'] ?? $payload['job'] ?? '') : ''),
                    'exception' => (string) ($row['exception'] ?? ''),
                    'failed_at' => (string) ($row['failed_at'] ?? ''),
                    'payload' => (string) ($row['payload'] ?? ''),
                ];
            }
            $send(['failed' => $list]);
            break;
        case 'retry':
            $send(['output' => $artisan('queue:retry', ['id' => array_values($req['ids'] ?? [])])]);
            break;
        case 'forget':
            $said = [];
            foreach ($req['ids'] ?? [] as $id) {
                $said[] = $artisan('queue:forget', ['id' => $id]);
            }
            $send(['output' => implode("\n", $said)]);
            break;
        case 'restart':
            $send(['output' => $artisan('queue:restart', [])]);
            break;
        case 'pause':
        case 'resume':
            if (! method_exists($manager, 'pause')) {
                $send(['error' => 'this app\'s Laravel ('.$app->version().') cannot pause a queue: queue:pause came with Laravel 12.40']);
                break;
            }
            $manager->{$op}($req['connection'], $req['queue']);
            $send(['ok' => true]);
            break;
        case 'paused':
            if (! method_exists($manager, 'isPaused')) {
                $send(['paused' => [], 'pausable' => false]);
                break;
            }
            $paused = [];
            foreach ($req['queues'] ?? [] as $q) {
                if ($manager->isPaused($req['connection'], $q)) {
                    $paused[] = $q;
                }
            }
            $send(['paused' => $paused, 'pausable' => true]);
            break;
        case 'batches':
        case 'batch':
        case 'cancel':
            $repo = $app->make(\Illuminate\Bus\BatchRepository::class);
            $show = function ($b) {
                $t = function ($d) {
                    return $d ? $d->getTimestamp() : null;
                };

                return ['id' => $b->id, 'name' => $b->name, 'total' => $b->totalJobs, 'pending' => $b->pendingJobs,
                    'failed' => $b->failedJobs, 'processed' => $b->processedJobs(), 'progress' => $b->progress(),
                    'failed_job_ids' => array_values($b->failedJobIds ?? []), 'created_at' => $t($b->createdAt),
                    'cancelled_at' => $t($b->cancelledAt), 'finished_at' => $t($b->finishedAt)];
            };
            if ($op === 'batches') {
                $send(['batches' => array_map($show, $repo->get(50, $req['before'] ?? null))]);
            } elseif ($op === 'batch') {
                $b = $repo->find($req['id'] ?? '');
                $send(['batch' => $b ? $show($b) : null]);
            } else {
                $b = $repo->find($req['id'] ?? '');
                if (! $b) {
                    $send(['error' => 'no batch '.($req['id'] ?? '')]);
                    break;
                }
                $b->cancel();
                $send(['ok' => true]);
            }
            break;
        case 'retry-batch':
            $send(['output' => $artisan('queue:retry-batch', ['id' => $req['id'] ?? ''])]);
            break;
        default:
            $send(['error' => "unknown console operation \"$op\""]);
    }
} catch (Throwable $e) {
    $send(['error' => get_class($e).': '.$e->getMessage()]);
}
