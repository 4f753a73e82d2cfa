<?php

// The fixture app has no composer: Debian's php-laravel-framework provides the
// framework and its dependencies, and the app's own classes load by PSR-4.
require_once '/usr/share/php/Illuminate/autoload.php';

spl_autoload_register(function ($class) {
    if (strncmp($class, 'App\\', 4) !== 0) {
        return;
    }
    $file = __DIR__.'/../app/'.str_replace('\\', '/', substr($class, 4)).'.php';
    if (is_file($file)) {
        require $file;
    }
});
