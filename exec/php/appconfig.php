<?php

// kqueue's reader of a Laravel app's queue configuration. kqueue pipes it
// into `php` (no file needed) in the app's folder; it boots the app once
// (the console kernel's bootstrap: .env, config, providers), reads what
// kqueue needs to take jobs from the app's queues, and writes one JSON
// object on fd 3 (the app's own output never shares that channel):
//
//   {"laravel":"8.83.27","php":"8.2.29",
//    "default_connection":"redis",       queue.default
//    "connection":"redis",               KQUEUE_CONNECTION, or the default
//    "queue":{"driver":"redis","connection":"default","queue":"default",
//             "retry_after":90|null,"block_for":5|null,"after_commit":false},
//    "redis":{"client":"phpredis","cluster":false,"url":null,"scheme":null,
//             "host":"127.0.0.1","port":6379,"username":null,"password":null,
//             "database":0,"prefix":"laravel_database_","prefix_from":"client"|"config"},
//    "database":null|{"table":"jobs","name":"mysql","driver":"mysql","host":…,"port":…,
//               "unix_socket":…,"database":"app","username":…,"password":…,"prefix":"",
//               "search_path":…,"sslmode":…,"charset":…,"busy_timeout":…},
//    "sqs":null|{"key":…,"secret":…,"token":…,"region":"us-east-1","prefix":…,"suffix":…,
//               "queue":"default","endpoint":…,"credentials":null|"ecs"|"instance","overflow":false},
//    "cache":{"driver":"redis","prefix":"laravel_cache","connection":"cache"},
//    "failed":{"driver":"database-uuids","database":"sqlite","table":"failed_jobs"}}
//
// or {"error":"…"} when the app does not boot or has no such connection.
// Environment: KQUEUE_APP_PATH (required), KQUEUE_CONNECTION (optional).

namespace KQueue\AppConfig;

use Throwable;

// Run as a script: boot the app, describe it on fd 3. (worker.php
// includes this file for its functions alone, defining KQUEUE_WORKER
// first: a pool worker describes the app it has booted, which spares a
// PHP run, and reads its cache briefly.)
if (! defined('KQUEUE_WORKER')) {
    $out = fopen('php://fd/3', 'w');
    try {
        $path = getenv('KQUEUE_APP_PATH');
        require $path.'/vendor/autoload.php';
        $app = require $path.'/bootstrap/app.php';
        $app->make(\Illuminate\Contracts\Console\Kernel::class)->bootstrap();
        $answer = describe($app);
    } catch (Throwable $e) {
        $answer = failure($e);
    }
    fwrite($out, json_encode($answer, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE | JSON_PARTIAL_OUTPUT_ON_ERROR)."\n");
    fflush($out);
}

// briefly calls $read with each connection it opens given at most
// $seconds to connect (PHP's default_socket_timeout, which phpredis
// and PHP's streams use where the app sets no timeout of its own: a
// minute, out of the box), and returns what $read returns. A Redis whose
// host is down, or behind a firewall that drops packets, never refuses a
// connect; only a timeout ends it, and kqueue must not wait a minute for a
// prefix or a timestamp. A Redis connection $read opened is opened again
// afterwards, as the app would have (it had just answered), so that what
// the app does with it later runs with the app's own timeouts.
function briefly($app, callable $read, int $seconds = 2)
{
    $redis = $app->bound('redis') ? $app['redis'] : null;
    $had = $redis !== null ? array_keys($redis->connections() ?? []) : [];
    $was = ini_set('default_socket_timeout', (string) $seconds);
    $answered = false;
    try {
        $got = $read();
        $answered = true;

        return $got;
    } finally {
        if ($was !== false) {
            ini_set('default_socket_timeout', $was);
        }
        foreach ($redis !== null ? array_diff(array_keys($redis->connections() ?? []), $had) : [] as $name) {
            $redis->purge($name);
            if ($answered) {
                try {
                    $redis->connection($name);
                } catch (Throwable $e) {
                    // gone since: the app connects again when it needs to
                }
            }
        }
    }
}

// failure is the answer for what was thrown booting or describing the app.
function failure(Throwable $e): array
{
    return ['error' => get_class($e).': '.$e->getMessage().' in '.$e->getFile().':'.$e->getLine()];
}

// describe is the answer above for the booted app $app: its queue
// configuration, or {"error":…} when it has no such connection. It throws
// what reading the configuration throws.
function describe($app): array
{
    // int or null: config values come as strings from .env.
    $int = function ($v) {
        return $v === null || $v === '' ? null : (int) $v;
    };
    $config = $app['config'];

    $default = $config->get('queue.default');
    $name = getenv('KQUEUE_CONNECTION') ?: $default;
    $conn = $config->get("queue.connections.$name");
    if (! is_array($conn)) {
        return ['error' => "the app has no queue connection \"$name\" (config/queue.php connections)",
            'default_connection' => $default, 'connection' => $name,
            'laravel' => $app->version(), 'php' => PHP_VERSION];
    }
    $answer = [
        'laravel' => $app->version(),
        'php' => PHP_VERSION,
        'default_connection' => $default,
        'connection' => $name,
        'queue' => [
            'driver' => $conn['driver'] ?? null,
            'connection' => $conn['connection'] ?? null,
            'queue' => $conn['queue'] ?? null,
            'retry_after' => $int($conn['retry_after'] ?? null),
            'block_for' => $int($conn['block_for'] ?? null),
            'after_commit' => (bool) ($conn['after_commit'] ?? false),
        ],
        'redis' => null,
        'database' => null,
        'sqs' => null,
        'cache' => null,
        'failed' => [
            'driver' => $config->get('queue.failed.driver'),
            'database' => $config->get('queue.failed.database'),
            'table' => $config->get('queue.failed.table'),
        ],
    ];

    if (($conn['driver'] ?? null) === 'redis') {
        $answer['redis'] = redis($app, $conn['connection'] ?? 'default', $int);
    }
    if (($conn['driver'] ?? null) === 'database') {
        $answer['database'] = database($app, $conn, $int);
    }
    if (($conn['driver'] ?? null) === 'sqs') {
        $str = function ($v) {
            return $v === null || $v === '' ? null : (string) $v;
        };
        $credentials = $conn['credentials'] ?? null;
        $answer['sqs'] = [
            'key' => $str($conn['key'] ?? null),
            'secret' => $str($conn['secret'] ?? null),
            'token' => $str($conn['token'] ?? null),
            'region' => $str($conn['region'] ?? null),
            'prefix' => (string) ($conn['prefix'] ?? ''),
            'suffix' => (string) ($conn['suffix'] ?? ''),
            'queue' => $str($conn['queue'] ?? null),
            'endpoint' => $str($conn['endpoint'] ?? null),
            'credentials' => is_array($credentials) ? ($credentials['provider'] ?? 'array') : $str($credentials),
            'overflow' => (bool) ($conn['overflow']['enabled'] ?? false),
        ];
    }

    $store = $config->get('cache.default');
    $answer['cache'] = [
        'store' => $store,
        'driver' => $config->get("cache.stores.$store.driver"),
        'prefix' => $config->get('cache.prefix'),
        'connection' => $config->get("cache.stores.$store.connection"),
    ];

    return $answer;
}

// redis describes the Redis connection $name as the app's client sees it:
// its settings merged as Laravel's RedisManager and PhpRedisConnector merge
// them, and the key prefix as the client applies it (phpredis OPT_PREFIX,
// Predis' prefix option) when the client can be made, else as the config
// says.
function redis($app, string $name, callable $int): array
{
    $config = $app['config'];
    $all = $config->get('database.redis', []);
    $options = $all['options'] ?? [];
    $cluster = ! isset($all[$name]) && isset($all['clusters'][$name]);
    $raw = $cluster ? [] : ($all[$name] ?? []);

    // The url key wins over host, port, …: ConfigurationUrlParser, as
    // RedisManager::parseConnectionConfiguration uses it.
    $parsed = $raw;
    if (class_exists(\Illuminate\Support\ConfigurationUrlParser::class)) {
        $parsed = (new \Illuminate\Support\ConfigurationUrlParser)->parseConfiguration($raw);
    }
    if (in_array(strtolower($parsed['driver'] ?? ''), ['tcp', 'tls'], true)) {
        $parsed['scheme'] = strtolower($parsed['driver']);
    }
    // PhpRedisConnector::connect: the connection's keys, then the global
    // options, then the connection's own options.
    $merged = array_merge($parsed, array_diff_key($options, ['parameters' => 1]), $parsed['options'] ?? []);

    $prefix = (string) ($merged['prefix'] ?? '');
    $from = 'config';
    if (! $cluster) {
        try {
            $client = briefly($app, function () use ($app, $name) {
                return $app['redis']->connection($name)->client();
            });
            if (method_exists($client, 'getOption')) { // phpredis
                $prefix = (string) $client->getOption(\Redis::OPT_PREFIX);
            } else { // predis
                $p = $client->getOptions()->prefix ?? null;
                $prefix = $p ? (string) $p->getPrefix() : '';
            }
            $from = 'client';
        } catch (Throwable $e) {
            // Redis out of reach: the config's word.
        }
    }

    return [
        'name' => $name,
        'client' => $all['client'] ?? 'phpredis',
        'cluster' => $cluster,
        'url' => $raw['url'] ?? null,
        'scheme' => $parsed['scheme'] ?? null,
        'host' => isset($parsed['host']) ? (string) $parsed['host'] : null,
        'port' => $int($parsed['port'] ?? null),
        'username' => isset($parsed['username']) && $parsed['username'] !== '' ? (string) $parsed['username'] : null,
        'password' => isset($parsed['password']) && $parsed['password'] !== '' ? (string) $parsed['password'] : null,
        'database' => $int($parsed['database'] ?? null),
        'prefix' => $prefix,
        'prefix_from' => $from,
    ];
}

// database describes the jobs table of a database queue connection and its
// database connection as Laravel's DatabaseManager configures it (the url
// key parsed over the rest), without connecting.
function database($app, array $conn, callable $int): array
{
    $config = $app['config'];
    $name = $conn['connection'] ?? $config->get('database.default');
    $raw = $config->get("database.connections.$name");
    if (! is_array($raw)) {
        throw new \RuntimeException("the queue connection's database connection \"$name\" is not in config/database.php connections");
    }
    $c = $raw;
    try {
        $c = $app['db']->connection($name)->getConfig(); // PDO connects lazily: nothing is reached
    } catch (Throwable $e) {
        if (class_exists(\Illuminate\Support\ConfigurationUrlParser::class)) {
            $c = (new \Illuminate\Support\ConfigurationUrlParser)->parseConfiguration($raw);
        }
    }
    $str = function ($v) {
        if (is_array($v)) {
            $v = reset($v); // several hosts: Laravel tries them in turn; kqueue takes the first
        }

        return $v === null || $v === '' || $v === false ? null : (string) $v;
    };

    $driver = (string) ($c['driver'] ?? '');
    $host = $str($c['host'] ?? null);
    $socket = $str($c['unix_socket'] ?? null);
    if ($socket === null && in_array($driver, ['mysql', 'mariadb'], true) && ($host === null || $host === 'localhost')) {
        // PDO's MySQL driver reaches "localhost" through its default socket.
        $socket = $str(ini_get('pdo_mysql.default_socket'));
    }
    $searchPath = $c['search_path'] ?? $c['schema'] ?? null;
    if (is_array($searchPath)) {
        $searchPath = implode(',', $searchPath);
    }

    return [
        'table' => (string) ($conn['table'] ?? 'jobs'),
        'name' => (string) $name,
        'driver' => $driver,
        'host' => $host,
        'port' => $int($c['port'] ?? null),
        'unix_socket' => $socket,
        'database' => (string) ($c['database'] ?? ''),
        'username' => $str($c['username'] ?? null),
        'password' => $str($c['password'] ?? null),
        'prefix' => (string) ($c['prefix'] ?? ''),
        'search_path' => $str($searchPath),
        'sslmode' => $str($c['sslmode'] ?? null),
        'charset' => $str($c['charset'] ?? null),
        'busy_timeout' => $int($c['busy_timeout'] ?? null),
    ];
}
