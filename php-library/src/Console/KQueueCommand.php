<?php

namespace KQueue\Console;

use Illuminate\Console\Command;
use Illuminate\Support\Env;
use Symfony\Component\Console\Output\ConsoleOutputInterface;
use Symfony\Component\Console\Output\OutputInterface;
use Symfony\Component\Process\ExecutableFinder;
use Symfony\Component\Process\Process;

/**
 * What the kqueue:* commands share: finding the kqueue binary and the
 * instance's config, and running the binary.
 *
 * The binary is config('kqueue.binary'), else $KQUEUE_BINARY, else kqueue
 * on the PATH. The instance is --config FILE, else the NAME argument
 * (/etc/kqueue/NAME.toml), else config('kqueue.config'), else
 * $KQUEUE_CONFIG, else kqueue.toml in the app's root if there is one, else
 * kqueue's own default, /etc/kqueue/default.toml.
 */
abstract class KQueueCommand extends Command
{
    /** The arguments every command takes, for its signature. */
    protected const INSTANCE = '{instance? : the kqueue instance NAME, whose config is /etc/kqueue/NAME.toml}
        {--config= : the kqueue config file (default: $KQUEUE_CONFIG, else kqueue.toml in the app root, else /etc/kqueue/default.toml)}';

    /**
     * The kqueue binary, resolved to a path.
     *
     * @throws \RuntimeException when it is not found
     */
    protected function binary(): string
    {
        $binary = (string) ($this->laravel['config']->get('kqueue.binary') ?: Env::get('KQUEUE_BINARY', 'kqueue'));
        $path = strpos($binary, '/') !== false ? $binary : (new ExecutableFinder)->find($binary);
        if ($path === null || ! is_file($path) || ! is_executable($path)) {
            throw new \RuntimeException(sprintf(
                'kqueue binary %s not found: install the kqueue package, or set KQUEUE_BINARY (or config kqueue.binary) to its path',
                $binary));
        }

        return $path;
    }

    /**
     * The arguments that name the instance: ["--config", FILE], [NAME] or
     * none (kqueue's default).
     *
     * @throws \InvalidArgumentException when both --config and NAME are given
     */
    protected function instance(): array
    {
        $file = $this->option('config');
        $name = $this->argument('instance');
        if ($file !== null && $name !== null) {
            throw new \InvalidArgumentException('give either an instance NAME or --config, not both');
        }
        if ($name !== null) {
            return [$name];
        }
        $file = $file
            ?? ($this->laravel['config']->get('kqueue.config') ?: null)
            ?? (Env::get('KQUEUE_CONFIG') ?: null);
        if ($file === null && is_file($local = $this->laravel->basePath('kqueue.toml'))) {
            $file = $local;
        }

        return $file === null ? [] : ['--config', $file];
    }

    /**
     * passthru runs `kqueue $args` and copies its output, unformatted, to
     * this command's output and error output. It returns kqueue's exit
     * code.
     */
    protected function passthru(array $args): int
    {
        try {
            $argv = array_merge([$this->binary()], $args);
        } catch (\RuntimeException $e) {
            $this->errorOutput()->writeln('kqueue: '.$e->getMessage(), OutputInterface::OUTPUT_RAW);

            return 1;
        }
        $process = new Process($argv, $this->laravel->basePath());
        $process->setTimeout(null);
        $stdout = $this->output->getOutput();
        $stderr = $this->errorOutput();
        $process->run(static function ($type, $buffer) use ($stdout, $stderr) {
            ($type === Process::ERR ? $stderr : $stdout)->write($buffer, false, OutputInterface::OUTPUT_RAW);
        });

        return (int) $process->getExitCode();
    }

    /** The error output, or the output when there is no separate one. */
    protected function errorOutput(): OutputInterface
    {
        $out = $this->output->getOutput();

        return $out instanceof ConsoleOutputInterface ? $out->getErrorOutput() : $out;
    }
}
