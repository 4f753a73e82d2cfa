<?php

// The tests run on Debian's php-laravel-framework and phpunit packages
// (make phpunit), or in a composer checkout of the library.
if (is_file(__DIR__.'/../vendor/autoload.php')) {
    require __DIR__.'/../vendor/autoload.php';
} else {
    require '/usr/share/php/Illuminate/autoload.php';
    require __DIR__.'/../src/autoload.php';
    spl_autoload_register(static function (string $class): void {
        if (strncmp($class, 'KQueue\\Tests\\', 13) === 0) {
            $file = __DIR__.'/'.str_replace('\\', '/', substr($class, 13)).'.php';
            if (is_file($file)) {
                require $file;
            }
        }
    });
}
