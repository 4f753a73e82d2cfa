<?php

// The fixture app has no composer: Debian's php-laravel-framework provides the
// framework and its dependencies, and the app's own classes load by PSR-4.
require_once '/usr/share/php/Illuminate/autoload.php';

spl_autoload_register(function ($class) {
    if ($class === 'Aws\\Sqs\\SqsClient' || $class === 'Aws\\Result') {
        require_once __DIR__.'/aws/SqsClient.php'; // see there
        return;
    }
    if (strncmp($class, 'App\\', 4) !== 0) {
        return;
    }
    $file = __DIR__.'/../app/'.str_replace('\\', '/', substr($class, 4)).'.php';
    if (is_file($file)) {
        require $file;
    }
});

// The kqueue PHP library, when it is there: from $KQUEUE_PHP_LIBRARY (tests
// point it at the repository's php-library/src), in place in the repository,
// or installed by the Debian package. The app runs without it, as any
// Laravel app does; AppServiceProvider registers its provider if present.
foreach ([getenv('KQUEUE_PHP_LIBRARY') ?: null, __DIR__.'/../../../php-library/src', '/usr/share/php/KQueue'] as $dir) {
    if ($dir !== null && is_file($dir.'/autoload.php')) {
        require_once $dir.'/autoload.php';
        break;
    }
}
