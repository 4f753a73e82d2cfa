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
        ],
    ],

    'migrations' => 'migrations',

    // As in the Laravel 8 skeleton: phpredis, and the client prefix
    // "laravel_database_" that every queue key carries.
    'redis' => [
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
