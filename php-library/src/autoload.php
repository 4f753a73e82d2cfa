<?php

// Debian-style autoloader: this folder is installed as /usr/share/php/KQueue,
// and an app without composer requires this file after Laravel's own
// (/usr/share/php/Illuminate/autoload.php). Composer apps use composer.json's
// PSR-4 mapping instead and never load this file.

spl_autoload_register(static function (string $class): void {
    if (strncmp($class, 'KQueue\\', 7) !== 0) {
        return;
    }
    $file = __DIR__.'/'.str_replace('\\', '/', substr($class, 7)).'.php';
    if (is_file($file)) {
        require $file;
    }
});
