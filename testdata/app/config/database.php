<?php

use Illuminate\Support\Str;

return [
    'default' => env('DB_CONNECTION', 'sqlite'),

    'connections' => [
        'sqlite' => [
            'driver' => 'sqlite',
            'database' => env('DB_DATABASE', database_path('database.sqlite')),
            'prefix' => '',
            'foreign_key_constraints' => true,
            // Workers writing at once (failed_jobs, job_batches) wait for
            // one another instead of failing with "database is locked".
            'options' => [PDO::ATTR_TIMEOUT => 10],
        ],

        // Where the tests put the database queue's jobs table: a private
        // server on a unix socket (QDB_SOCKET; PostgreSQL: its folder).
        'mysql' => [
            'driver' => 'mysql',
            'host' => 'localhost',
            'unix_socket' => env('QDB_SOCKET'),
            'database' => env('QDB_DATABASE', 'app'),
            'username' => env('QDB_USERNAME', 'root'),
            'password' => env('QDB_PASSWORD', ''),
            'charset' => 'utf8mb4',
            'collation' => 'utf8mb4_unicode_ci',
            'prefix' => '',
        ],

        'pgsql' => [
            'driver' => 'pgsql',
            'host' => env('QDB_SOCKET'),
            'database' => env('QDB_DATABASE', 'postgres'),
            'username' => env('QDB_USERNAME', 'postgres'),
            'password' => env('QDB_PASSWORD', ''),
            'charset' => 'utf8',
            'prefix' => '',
            'schema' => 'public',
            'search_path' => 'public',
            'sslmode' => 'prefer',
        ],
    ],

    'migrations' => 'migrations',

    // As in the Laravel 8 skeleton: phpredis, and the client prefix
    // "laravel_database_" that every queue key carries. With
    // REDIS_CLUSTER_NODES ("127.0.0.1:7000,127.0.0.1:7001"), the queue's
    // connection is that Redis Cluster instead (phpredis' RedisCluster).
    'redis' => env('REDIS_CLUSTER_NODES') ? [
        'client' => env('REDIS_CLIENT', 'phpredis'),

        'options' => [
            'cluster' => 'redis',
            'prefix' => env('REDIS_PREFIX', Str::slug(env('APP_NAME', 'laravel'), '_').'_database_'),
        ],

        'clusters' => [
            'default' => array_map(function ($node) {
                [$host, $port] = explode(':', $node);

                return ['host' => $host, 'port' => $port, 'password' => env('REDIS_PASSWORD', null), 'database' => 0];
            }, explode(',', env('REDIS_CLUSTER_NODES'))),
        ],

        'probe' => [
            'host' => env('KQ_PROBE_REDIS_HOST', '127.0.0.1'),
            'port' => env('KQ_PROBE_REDIS_PORT', '6379'),
            'database' => 0,
        ],
    ] : [
        'client' => env('REDIS_CLIENT', 'phpredis'),

        'options' => [
            'cluster' => env('REDIS_CLUSTER', 'redis'),
            'prefix' => env('REDIS_PREFIX', Str::slug(env('APP_NAME', 'laravel'), '_').'_database_'),
        ],

        'default' => [
            'url' => env('REDIS_URL'),
            'host' => env('REDIS_HOST', '127.0.0.1'),
            'password' => env('REDIS_PASSWORD', null),
            'port' => env('REDIS_PORT', '6379'),
            'database' => env('REDIS_DB', '0'),
        ],

        'cache' => [
            'url' => env('REDIS_URL'),
            'host' => env('REDIS_HOST', '127.0.0.1'),
            'password' => env('REDIS_PASSWORD', null),
            'port' => env('REDIS_PORT', '6379'),
            'database' => env('REDIS_CACHE_DB', '1'),
        ],

        // The test probe's records (App\Probe): the queue's Redis, unless a
        // test gives them a server of their own (KQ_PROBE_REDIS_HOST).
        'probe' => [
            'host' => env('KQ_PROBE_REDIS_HOST', env('REDIS_HOST', '127.0.0.1')),
            'port' => env('KQ_PROBE_REDIS_PORT', env('REDIS_PORT', '6379')),
            'database' => env('REDIS_DB', '0'),
        ],
    ],
];
