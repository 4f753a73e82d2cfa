<?php

namespace KQueue\Tests;

use Illuminate\Config\Repository;
use Illuminate\Console\Application as Artisan;
use Illuminate\Events\Dispatcher;
use Illuminate\Filesystem\Filesystem;
use Illuminate\Foundation\Application;
use Illuminate\Foundation\PackageManifest;
use Illuminate\Queue\Queue;
use KQueue\KQueueServiceProvider;
use KQueue\Tests\Fixtures\PayloadQueue;
use KQueue\Tests\Fixtures\Untrusted;
use PHPUnit\Framework\TestCase;

class ServiceProviderTest extends TestCase
{
    private string $base;

    protected function setUp(): void
    {
        $this->base = sys_get_temp_dir().'/kqueue-phpunit-'.getmypid().'-'.bin2hex(random_bytes(4));
        mkdir($this->base.'/vendor/composer', 0777, true);
        mkdir($this->base.'/bootstrap/cache', 0777, true);
        $this->setEnv('KQUEUE_CONFIG', null);
        $this->setEnv('KQUEUE_BINARY', null);
    }

    protected function tearDown(): void
    {
        Queue::createPayloadUsing(null);
        Artisan::forgetBootstrappers();
        (new Filesystem)->deleteDirectory($this->base);
    }

    // Laravel's own package discovery finds the provider in the library's
    // composer.json, as composer installs it into vendor/composer/installed.json.
    public function testComposerDiscoversTheProvider(): void
    {
        $package = json_decode(file_get_contents(__DIR__.'/../composer.json'), true, 512, JSON_THROW_ON_ERROR);
        file_put_contents($this->base.'/vendor/composer/installed.json', json_encode(['packages' => [$package]]));
        $manifest = new PackageManifest(new Filesystem, $this->base, $this->base.'/bootstrap/cache/packages.php');
        $this->assertSame([KQueueServiceProvider::class], $manifest->providers());
    }

    public function testRegistersThePayloadHook(): void
    {
        $this->app();
        $this->assertSame(['isolated' => true], (new PayloadQueue)->payloadFor(new Untrusted)['kqueue']);
    }

    public function testRegistersTheCommands(): void
    {
        $artisan = $this->artisan();
        foreach (['kqueue:status', 'kqueue:run', 'kqueue:check'] as $name) {
            $this->assertTrue($artisan->has($name), $name);
        }
    }

    // The commands run the kqueue binary with the instance's config: here
    // the binary is echo, which prints the arguments it was given.
    public function testCommandsNameTheInstance(): void
    {
        $artisan = $this->artisan(['binary' => '/bin/echo']);
        $cases = [
            ['kqueue:status', [], "status\n"],
            ['kqueue:status', ['--json' => true], "status --json\n"],
            ['kqueue:status', ['instance' => 'mail'], "status mail\n"],
            ['kqueue:check', ['--config' => '/srv/kq.toml'], "check --config /srv/kq.toml\n"],
        ];
        foreach ($cases as [$command, $args, $want]) {
            $this->assertSame(0, $artisan->call($command, $args), $command);
            $this->assertSame($want, $artisan->output(), $command.' '.json_encode($args));
        }

        // kqueue.toml in the app root is found; $KQUEUE_CONFIG beats it, and
        // config kqueue.config beats that.
        touch($this->base.'/kqueue.toml');
        $artisan->call('kqueue:status');
        $this->assertSame("status --config {$this->base}/kqueue.toml\n", $artisan->output());
        $this->setEnv('KQUEUE_CONFIG', '/etc/kqueue/env.toml');
        $artisan->call('kqueue:check');
        $this->assertSame("check --config /etc/kqueue/env.toml\n", $artisan->output());
        $artisan = $this->artisan(['binary' => '/bin/echo', 'config' => '/etc/kqueue/app.toml']);
        $artisan->call('kqueue:check');
        $this->assertSame("check --config /etc/kqueue/app.toml\n", $artisan->output());
        $this->setEnv('KQUEUE_CONFIG', null);

        $this->assertSame(2, $artisan->call('kqueue:status', ['instance' => 'mail', '--config' => '/srv/kq.toml']));
        $this->assertStringContainsString('either an instance NAME or --config', $artisan->output());
    }

    // kqueue's exit code and its error output come through.
    public function testCommandsReportKqueuesFailure(): void
    {
        $artisan = $this->artisan(['binary' => '/bin/false']);
        $this->assertSame(1, $artisan->call('kqueue:status'));

        $artisan = $this->artisan(['binary' => $this->base.'/no-such-kqueue']);
        foreach (['kqueue:status', 'kqueue:run', 'kqueue:check'] as $name) {
            $this->assertSame(1, $artisan->call($name), $name);
            $this->assertSame("kqueue: kqueue binary {$this->base}/no-such-kqueue not found: install the kqueue package, or set KQUEUE_BINARY (or config kqueue.binary) to its path\n", $artisan->output());
        }
    }

    // setEnv sets (or with null unsets) an environment variable everywhere
    // Laravel's Env reads it.
    private function setEnv(string $name, ?string $value): void
    {
        putenv($value === null ? $name : "$name=$value");
        foreach ([&$_SERVER, &$_ENV] as &$vars) {
            if ($value === null) {
                unset($vars[$name]);
            } else {
                $vars[$name] = $value;
            }
        }
    }

    private function app(array $kqueue = []): Application
    {
        $app = new Application($this->base);
        $app->instance('config', new Repository(['kqueue' => $kqueue]));
        $app->singleton('events', fn ($app) => new Dispatcher($app));
        $app->register(KQueueServiceProvider::class);
        $app->boot();

        return $app;
    }

    private function artisan(array $kqueue = []): Artisan
    {
        $app = $this->app($kqueue);
        $artisan = new Artisan($app, $app['events'], 'test');
        $artisan->setAutoExit(false);

        return $artisan;
    }
}
