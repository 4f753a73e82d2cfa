#!/usr/bin/env bash
# The kqueue demo: the fixture Laravel app (Debian's Laravel 8) dispatches a
# mix of real jobs onto a private redis-server, and `kqueue run` runs them in
# a warm pool of PHP workers. It prints what happened to each job.
#
# DRIVER=database puts the queue in Laravel's jobs table instead, in the
# app's own SQLite database, as a new Laravel 11+ app has it (the
# redis-server then holds only the demo's cache).
set -euo pipefail
driver=${DRIVER:-redis}
case "$driver" in redis | database) ;; *) echo "DRIVER is redis or database, not $driver" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/.." && pwd)
kqueue="$root/bin/kqueue"
work=$(mktemp -d /tmp/kqueue-demo.XXXXXX)
redis_pid=""
kqueue_pid=""
cleanup() {
	[ -n "$kqueue_pid" ] && kill "$kqueue_pid" 2>/dev/null || true
	[ -n "$redis_pid" ] && kill "$redis_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "a private redis-server on $work/redis.sock"
redis-server --port 0 --unixsocket "$work/redis.sock" --save '' --appendonly no --dir "$work" --loglevel warning >"$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 100); do redis-cli -s "$work/redis.sock" ping >/dev/null 2>&1 && break; sleep 0.05; done
rcli() { redis-cli -s "$work/redis.sock" "$@"; }

cp -r "$root/testdata/app" "$work/app"
rm -f "$work/app/bootstrap/cache/"*.php
touch "$work/app.sqlite"
export REDIS_HOST="$work/redis.sock" REDIS_PORT=0 DB_DATABASE="$work/app.sqlite" LOG_CHANNEL=null KQ_PROBE=1
if [ "$driver" = database ]; then
	export QUEUE_CONNECTION=database DB_QUEUE_CONNECTION=sqlite
fi
artisan() { (cd "$work/app" && php artisan "$@"); }
sql() { php -r '$db = new PDO("sqlite:" . $argv[1]); echo $db->query($argv[2])->fetchColumn(), "\n";' "$work/app.sqlite" "$1"; }
# left counts the jobs not settled yet: ready, delayed or reserved.
left() {
	if [ "$driver" = database ]; then
		sql "SELECT COUNT(*) FROM jobs"
	else
		echo $(( $(rcli llen laravel_database_queues:default) + $(rcli zcard laravel_database_queues:default:delayed) + $(rcli zcard laravel_database_queues:default:reserved) ))
	fi
}
say "a copy of the fixture app on Debian's $(artisan --version), PHP $(php -r 'echo PHP_VERSION;')"
artisan migrate --force >/dev/null

say "the app dispatches its jobs with dispatch(), as any Laravel app does"
artisan kq:dispatch mix          # success, retries, backoff, maxExceptions, retryUntil, release, fail, encrypted, unique, delayed, chain, closure
artisan kq:dispatch timeout      # sleeps 30 s with a 1 s timeout
artisan kq:dispatch crash        # exit(3) on its first attempt
artisan kq:dispatch isolated     # $isolated jobs: a 300 MB hog under a 64 MB limit, a child that outlives its timeout, a fork bomb
artisan kq:dispatch noop --count=500
if [ "$driver" = database ]; then
	echo "queued in the jobs table of $work/app.sqlite: $(sql "SELECT COUNT(*) FROM jobs WHERE available_at <= strftime('%s')") ready, $(sql "SELECT COUNT(*) FROM jobs WHERE available_at > strftime('%s')") delayed"
else
	echo "queued: $(rcli llen laravel_database_queues:default) ready, $(rcli zcard laravel_database_queues:default:delayed) delayed"
fi

# Only the app's path: kqueue reads the rest (its queue connection, the
# Redis server or database, the queue, retry_after) from the app itself.
cat >"$work/kqueue.toml" <<TOML
[app]
path = "$work/app"
[pool]
workers = 2
[isolation]
tasks = 32
TOML

say "kqueue run --config $work/kqueue.toml"
start=$(date +%s%N)
"$kqueue" run --config "$work/kqueue.toml" --log-format json 2>"$work/kqueue.log" &
kqueue_pid=$!
# Wait until every job has settled: nothing ready, delayed or reserved.
for _ in $(seq 600); do
	[ "$(left)" -eq 0 ] && break
	sleep 0.1
done
kill -TERM "$kqueue_pid"
wait "$kqueue_pid" || { echo "kqueue exited with an error:"; cat "$work/kqueue.log"; exit 1; }
kqueue_pid=""
end=$(date +%s%N)

say "what happened to each job (from kqueue's log; 500 no-op jobs folded into one line)"
php -r '
$noop = ["n" => 0, "us" => 0];
foreach (file($argv[1]) as $line) {
    $e = json_decode($line, true);
    if (!$e || !isset($e["outcome"])) { continue; }
    $us = (float) $e["duration"] / 1000;
    if ($e["job_name"] === "App\\Jobs\\Noop") { $noop["n"]++; $noop["us"] += $us; continue; }
    $how = ($e["strategy"] ?? "inline") === "inline" ? "inline" : "isolated";
    printf("  %-28s attempt %d  %-8s %-9s %8.1f ms  %s\n", $e["job_name"], $e["attempt"], $how, $e["outcome"], $us / 1000,
        isset($e["error"]) ? substr(strtok($e["error"], "\n"), 0, 100) : "");
}
printf("  %-28s %d jobs, all done, %.2f ms each on average\n", "App\\Jobs\\Noop", $noop["n"], $noop["us"] / max($noop["n"], 1) / 1000);
' "$work/kqueue.log"

say "failed_jobs (written by Laravel's own failer, as queue:work writes it)"
php -r '
$db = new PDO("sqlite:" . $argv[1]);
foreach ($db->query("SELECT queue, payload, exception FROM failed_jobs ORDER BY id") as $row) {
    $p = json_decode($row["payload"], true);
    printf("  %-28s %s\n", $p["displayName"], substr(strtok($row["exception"], "\n"), 0, 120));
}' "$work/app.sqlite"

say "all settled in $(( (end - start) / 1000000 )) ms: $(left) jobs left ready, delayed or reserved; kqueue stopped cleanly on SIGTERM"
