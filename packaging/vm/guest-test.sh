#!/bin/bash
# The end-to-end test, run as root inside the VM (packaging/vm/vm.sh) on real
# systemd with pure cgroup v2: a user's whole story with kqueue, from
# `apt install kqueue` to `apt purge kqueue`. $1 is the output folder on the
# share; one PASS/FAIL line per check goes to $1/summary.txt.
set -u
out=${1:-/tmp}
share=/mnt/share
: >"$out/summary.txt"
failures=0

pass() { echo "PASS: $*" | tee -a "$out/summary.txt"; }
fail() {
	echo "FAIL: $*" | tee -a "$out/summary.txt"
	failures=$((failures + 1))
}
check() { # description command…
	local what=$1
	shift
	if "$@"; then pass "$what"; else
		fail "$what"
		return 1
	fi
}
# need: a check the rest depends on; when it fails, the test ends here.
need() {
	check "$@" || {
		echo "$failures failed; stopping: the checks after this one depend on it"
		exit 1
	}
}
step() { printf '\n== %s\n' "$*"; }
# until SECONDS command…: true once the command succeeds, polled every 0.2 s.
until_ok() {
	local deadline=$((SECONDS + $1))
	shift
	while ! "$@" >/dev/null 2>&1; do
		[ $SECONDS -lt $deadline ] || return 1
		sleep 0.2
	done
}

app=/srv/app
artisan() { (cd "$app" && php artisan "$@"); }
rcli() { redis-cli "$@"; }
key() { echo "laravel_database_$1"; }
# pending: jobs of the default queue still ready, delayed or reserved.
pending() {
	echo $(($(rcli llen "$(key queues:default)") + $(rcli zcard "$(key queues:default:delayed)") + $(rcli zcard "$(key queues:default:reserved)")))
}
drained() { [ "$(pending)" = 0 ]; }
runs() { rcli hget "$(key kqtest:runs)" "$1"; }
# ran TAG N: the job tagged TAG has run N times.
ran() { [ "$(runs "$1")" = "$2" ]; }
active() { [ "$(systemctl is-active "$1")" = active ]; }
inactive() { ! systemctl is-active --quiet "$1"; }
journal() { journalctl --no-pager "$@"; }

step "boot"
state=$(systemctl is-system-running --wait)
need "the system booted ($state)" test "$state" = running
check "cgroup v2 only: /sys/fs/cgroup is cgroup2fs" test "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs
check "redis-server answers" until_ok 30 rcli ping

step "apt install kqueue, from the local repository"
cp -r "$share/repo" /srv/kqueue-apt
echo 'deb [trusted=yes] file:/srv/kqueue-apt ./' >/etc/apt/sources.list.d/kqueue.list
apt-get update -qq
need "apt-get install kqueue" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q kqueue
check "the kqueue group exists" getent group kqueue
check "the kqueue user exists (the poller's account)" getent passwd kqueue
check "/etc/kqueue/default.toml is installed" test -f /etc/kqueue/default.toml
check "the package enabled kqueue.service (the umbrella unit)" test "$(systemctl is-enabled kqueue.service)" = enabled
check "kqueue.service is active" active kqueue.service
kqueue version

step "the fixture app at /srv/app (the path default.toml names)"
cp -r "$share/app" "$app"
rm -f "$app"/bootstrap/cache/*.php
touch "$app/database/database.sqlite"
artisan migrate --force >/dev/null
# The app's probe records each job run in Redis.
# The jobs run as www-data, which owns what Laravel writes.
chown -R www-data:www-data "$app/storage" "$app/database" "$app/bootstrap/cache"
sed -i 's/^# \[app.env\]$/[app.env]\nKQ_PROBE = "1"/; s/^# listen = "127.0.0.1:9464"/listen = "127.0.0.1:9464"/; s/^# user = "www-data"/user = "www-data"/' /etc/kqueue/default.toml
# The jobs write the SQLite database: under the sandbox, say so.
sed -i 's/^# writable = \["database"\]/writable = ["database"]/' /etc/kqueue/default.toml
kqueue check --config /etc/kqueue/default.toml | tee "$out/check-before.txt"
check "kqueue check says the sandbox lags the config until daemon-reload" \
	grep -q "writable paths are not those of /etc/kqueue/default.toml: run systemctl daemon-reload" "$out/check-before.txt"
systemctl daemon-reload
check "kqueue-generator opened the app's writable paths to the dispatcher" \
	grep -q '^ReadWritePaths=-/srv/app/database$' /run/systemd/generator/kqueue-dispatcher@default.service.d/50-kqueue-sandbox.conf
kqueue check --config /etc/kqueue/default.toml | tee "$out/check.txt"
check "kqueue check accepts the config, with no sandbox warning" bash -c "! grep -q 'warning: sandbox' $out/check.txt"

step "systemctl enable --now kqueue@default"
need "systemctl enable --now kqueue@default" systemctl enable --now kqueue@default
need "kqueue@default is active" active kqueue@default
need "the dispatcher was started by its socket" until_ok 60 active kqueue-dispatcher@default
systemctl status --no-pager kqueue@default kqueue-dispatcher@default | head -n 30

step "least privilege"
poller=$(systemctl show -P MainPID kqueue@default)
check "the poller runs as kqueue" test "$(ps -o user= -p "$poller")" = kqueue
check "with no capabilities (CapEff: 0)" grep -qx 'CapEff:[[:space:]]*0000000000000000' "/proc/$poller/status"
dispatcher=$(systemctl show -P MainPID kqueue-dispatcher@default)
grep -E '^Cap(Eff|Bnd):' "/proc/$dispatcher/status"
check "the dispatcher can only switch users, signal, and chown (CapBnd: setuid setgid kill chown)" \
	grep -qx 'CapBnd:[[:space:]]*00000000000000e1' "/proc/$dispatcher/status"
exposure() { systemd-analyze security --no-pager "$1" | tee "$out/security-$1.txt" | sed -n 's/.*Overall exposure level for .*: \([0-9.]*\).*/\1/p'; }
p_exp=$(exposure kqueue@default.service)
d_exp=$(exposure kqueue-dispatcher@default.service)
echo "systemd-analyze security: kqueue@default $p_exp, kqueue-dispatcher@default $d_exp"
grep -E '✗' "$out/security-kqueue@default.service.txt" || true
check "systemd-analyze security: the poller's exposure $p_exp <= 2.0" awk -v e="$p_exp" 'BEGIN { exit !(e != "" && e <= 2.0) }'
check "systemd-analyze security: the dispatcher's exposure $d_exp <= 5.0" awk -v e="$d_exp" 'BEGIN { exit !(e != "" && e <= 5.0) }'
artisan kq:dispatch outside
outside() { rcli lrange "$(key kqtest:log)" 0 -1 | grep '"kind":"outside"'; }
check "a job that writes beside the app's code ran" until_ok 60 outside
outside | tee "$out/outside.txt"
check "and was refused: Read-only file system" grep -q '"written":false.*Read-only file system' "$out/outside.txt"
check "nothing was written there" test ! -e "$app/kqueue-escape.txt"

step "a mix of jobs from the app"
artisan kq:dispatch mix
artisan kq:dispatch noop --count=200
artisan kq:dispatch crash
artisan kq:dispatch chatty
check "every job completed (ready, delayed and reserved all empty)" until_ok 120 drained
check "the crashed job ran again and succeeded" test "$(runs crash)" = 2
check "the chain ran to its end" test "$(runs chain-3)" = 1
check "the jobs ran as www-data ([app] user), not root" bash -c "redis-cli lrange $(key kqtest:log) 0 -1 | grep '\"kind\":\"env\"' | grep -q '\"user\":33'"
artisan kq:failed | tee "$out/failed-mix.txt"
check "failed jobs are in failed_jobs (Fails, FailsManually)" grep -q 'App\\Jobs\\FailsManually' "$out/failed-mix.txt"

step "status and journal"
status=$(systemctl show -P StatusText kqueue@default)
echo "STATUS=$status"
check "systemctl status shows the live STATUS=" grep -q 'done' <<<"$status"
systemctl status --no-pager kqueue@default | grep -i 'status:' || true
journal -u kqueue@default -o verbose >"$out/journal-poller.txt"
uuid=$(sed -n 's/^ *JOB_UUID=//p' "$out/journal-poller.txt" | head -n1)
echo "one job: JOB_UUID=$uuid"
journal -u kqueue@default JOB_UUID="$uuid" -o verbose | tee "$out/journal-one-job.txt" | grep -E 'MESSAGE=|OUTCOME=|QUEUE=' || true
check "journalctl -u kqueue@default JOB_UUID=… shows the job with its OUTCOME" grep -q '^ *OUTCOME=' "$out/journal-one-job.txt"
artisan kq:dispatch loud
loud_logged() { [ "$(journal -u kqueue@default OUTCOME=failed JOB_NAME='App\Jobs\FailsLoudly' -o cat --output-fields=ERROR | wc -c)" -gt 300000 ]; }
check "a job's error of 300,000 bytes is in its journal entry, whole (a sealed file, not a datagram)" until_ok 60 loud_logged
kqueue status default | tee "$out/status.txt"
check "kqueue status reaches the instance" grep -q 'default' "$out/status.txt"
artisan kqueue:status default | tee "$out/artisan-status.txt" | head -n 3
check "php artisan kqueue:status (the package's library in /usr/share/php/KQueue) shows it too" grep -q '^QUEUE ' "$out/artisan-status.txt"

step "metrics"
php -r 'echo file_get_contents("http://127.0.0.1:9464/metrics");' >"$out/metrics.txt"
check "Prometheus metrics count the jobs" grep -q '^kqueue_jobs_total{job="App\\\\Jobs\\\\Record",outcome="done",queue="default"}' "$out/metrics.txt"
grep '^kqueue_' "$out/metrics.txt" | head -n 20

step "systemctl reload kqueue@default during a stream of jobs"
artisan kq:dispatch record --count=300 --queue=default
since=$(date '+%Y-%m-%d %H:%M:%S')
check "systemctl reload kqueue@default" systemctl reload kqueue@default
check "systemctl reload kqueue (every instance) exits 0" systemctl reload kqueue
recycled() { [ "$(journal -u kqueue-dispatcher@default --since "$since" | grep -c 'reload: recycling worker')" -ge 2 ]; }
check "the reload reached the dispatcher and replaced both workers" until_ok 60 recycled
check "the stream completed" until_ok 120 drained
check "no job failed or ran twice in the reload" test "$(runs record-299)" = 1 -a "$(artisan kq:failed | grep -c Record)" = 0
both_active() { active kqueue@default && active kqueue-dispatcher@default; }
check "both units are still active" both_active

step "an isolated job over its memory limit (transient scope, systemd driver)"
artisan kq:dispatch isolated
check "the isolated jobs and the ones after them completed" until_ok 120 drained
artisan kq:failed | tee "$out/failed-isolated.txt"
check "the memory hog failed with the memory reason" grep -q 'IsolatedHog: .*exceeded its memory limit (64M)' "$out/failed-isolated.txt"
journal -k | grep -E 'oom_memcg=|Memory cgroup out of memory' | tail -n 4 | tee "$out/kernel-oom.txt"
check "the kernel OOM-killed it inside its own scope in kqueue.slice" grep -q 'oom_memcg=/kqueue.slice/kqueue-default-[^ ]*\.scope' "$out/kernel-oom.txt"
journal -u kqueue-dispatcher@default -o verbose | grep -m3 '^ *SCOPE=' || true
child=$(rcli lrange "$(key kqtest:log)" 0 -1 | sed -n 's/.*"kind":"child","tag":"spawner","pid":\([0-9]*\).*/\1/p')
echo "the spawner's child: pid $child"
check "the spawner's 'sleep 1000' child (pid $child) was killed with it" test -n "$child" -a ! -e "/proc/$child"
check "the jobs after them ran" test "$(runs after-2)" = 1
check "kqueue@default stayed active" active kqueue@default
check "kqueue-dispatcher@default stayed active" active kqueue-dispatcher@default
check "no job scope is left behind" bash -c '! systemctl list-units --all --no-legend "kqueue-default-*.scope" | grep -q .'

step "isolated jobs under the cgroupfs driver on cgroup v2: kqueue@v2, in its dispatcher's delegated cgroup"
cat >/etc/kqueue/v2.toml <<'TOML'
[app]
path = "/srv/app"
user = "www-data"
writable = ["database"]
[app.env]
KQ_PROBE = "1"
[redis]
url = "redis://127.0.0.1:6379/0"
prefix = "laravel_database_"
[[queue]]
name = "v2"
[pool]
workers = 1
nice = 3
[isolation]
driver = "cgroupfs"
max_concurrent = 1
TOML
rcli del "$(key kqtest:runs)" "$(key kqtest:log)" >/dev/null
svc=/kqueue.slice/kqueue-dispatcher@v2.service
v2drained() { [ $(($(rcli llen "$(key queues:v2)") + $(rcli zcard "$(key queues:v2:delayed)") + $(rcli zcard "$(key queues:v2:reserved)"))) = 0 ]; }
hogs_v2() { artisan kq:failed | grep -c "IsolatedHog: .*exceeded its memory limit (64M): the kernel killed it in cgroup $svc/job-"; }
check "systemctl enable --now kqueue@v2" systemctl enable --now kqueue@v2
check "its dispatcher was started by its socket" until_ok 60 active kqueue-dispatcher@v2
v2pid=$(systemctl show -P MainPID kqueue-dispatcher@v2)
check "the dispatcher moved into the leaf of its delegated cgroup" grep -qx "0::$svc/dispatcher" "/proc/$v2pid/cgroup"
check "and handed memory, cpu and pids to the job groups" grep -q 'cpu memory pids' "/sys/fs/cgroup$svc/cgroup.subtree_control"
# [pool] nice: the worker lowers its own priority (the dispatcher, root
# without CAP_SYS_NICE, could not lower that of www-data's process).
worker_nice() { local p; p=$(pgrep -P "$1" -f worker.php | head -n 1); [ -n "$p" ] && [ "$(ps -o ni= -p "$p" | tr -d ' ')" = "$2" ]; }
check "its PHP worker runs 3 nice levels below it ([pool] nice = 3)" until_ok 30 worker_nice "$v2pid" 3
artisan kq:dispatch isolated --queue=v2
check "the isolated jobs and the ones after them completed" until_ok 120 v2drained
artisan kq:failed | grep "$svc/" | tee "$out/failed-v2.txt"
check "the memory hog failed with the memory reason, in its cgroup below the dispatcher's" test "$(hogs_v2)" = 1
journal -k | grep -E "oom_memcg=$svc/" | tail -n 2 | tee "$out/kernel-oom-v2.txt"
check "the kernel OOM-killed it in a cgroup under $svc" grep -q "oom_memcg=$svc/job-" "$out/kernel-oom-v2.txt"
child=$(rcli lrange "$(key kqtest:log)" 0 -1 | sed -n 's/.*"kind":"child","tag":"spawner","pid":\([0-9]*\).*/\1/p')
echo "the spawner's child: pid $child"
check "the spawner's 'sleep 1000' child (pid $child) was killed with its cgroup" test -n "$child" -a ! -e "/proc/$child"
check "the jobs after them ran" ran after-2 1
check "the fork bomb ran to its end under the task limit" bash -c "redis-cli lrange $(key kqtest:log) 0 -1 | grep -q '\"kind\":\"bomb-done\"'"
check "kqueue-dispatcher@v2 stayed active, same process" test "$(systemctl show -P MainPID kqueue-dispatcher@v2)" = "$v2pid"
check "kqueue@v2 stayed active" active kqueue@v2
check "no job cgroup is left behind" bash -c "! ls -d /sys/fs/cgroup$svc/job-* 2>/dev/null"
journal -u kqueue-dispatcher@v2 >"$out/journal-v2.txt"
check "the dispatcher logged no cgroup error" bash -c "! grep -E 'empty job cgroup|remove job cgroup|read job cgroup|isolated job not run' $out/journal-v2.txt"
systemctl disable --now kqueue@v2
check "the dispatcher's cgroup went with it" until_ok 30 test ! -e "/sys/fs/cgroup$svc"

step "a pool that scales, held back by its dispatcher's MemoryMax (cgroup v2)"
cat >/etc/kqueue/scale.toml <<'TOML'
[app]
path = "/srv/app"
user = "www-data"
writable = ["database"]
[app.env]
KQ_PROBE = "1"
[redis]
url = "redis://127.0.0.1:6379/0"
prefix = "laravel_database_"
[[queue]]
name = "scale"
[pool]
min_workers = 1
max_workers = 4
scale_wait = 0.5
scale_cooldown = 3
TOML
scalesvc=/sys/fs/cgroup/kqueue.slice/kqueue-dispatcher@scale.service
scale_drained() { [ $(($(rcli llen "$(key queues:scale)") + $(rcli zcard "$(key queues:scale:reserved)"))) = 0 ]; }
scale_journal() { journal -u kqueue-dispatcher@scale; }
check "systemctl enable --now kqueue@scale" systemctl enable --now kqueue@scale
check "its dispatcher is up with one worker" until_ok 60 bash -c "kqueue status scale | grep -q 'scaling: 1 to 4 workers, keeping 1'"
# The limit: what the service holds now (less the page cache it could
# give back) and room for a second worker (and 3 MiB), not a third. The
# scaler reckons a worker costs the cgroup its private memory (RssAnon: the
# files it maps are cached already), and keeps a tenth of the limit free.
used=$(($(cat $scalesvc/memory.current) - $(sed -n 's/^inactive_file //p' $scalesvc/memory.stat)))
wpid=$(for p in $(cat $scalesvc/cgroup.procs); do grep -qa worker.php "/proc/$p/cmdline" && echo "$p"; done | head -n 1)
anon=$(($(sed -n 's/^RssAnon:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$wpid/status") * 1024))
limit=$(((used + anon + (3 << 20)) * 10 / 9))
echo "the service uses $((used >> 20)) MiB; its worker (pid $wpid) holds $((anon >> 20)) MiB of its own: MemoryMax=$((limit >> 20))M"
check "systemctl set-property kqueue-dispatcher@scale MemoryMax=$((limit >> 20))M" systemctl set-property --runtime kqueue-dispatcher@scale.service MemoryMax=$limit
artisan kq:dispatch busy --count=60 --queue=scale
check "the burst ran" until_ok 120 scale_drained
check "the pool grew to 2 workers while the jobs waited" until_ok 30 bash -c "journalctl --no-pager -u kqueue-dispatcher@scale | grep -q 'pool grew to 2: jobs on scale wait'"
check "then the service's cgroup held it, and the log says so, once" bash -c "test \$(journalctl --no-pager -u kqueue-dispatcher@scale | grep -c 'pool held at 2 workers: .*memory: the service.s cgroup uses') = 1"
check "it never grew past what MemoryMax holds" bash -c "! journalctl --no-pager -u kqueue-dispatcher@scale | grep -q 'pool grew to 3'"
check "back to one worker after the cooldown" until_ok 60 bash -c "journalctl --no-pager -u kqueue-dispatcher@scale | grep -q 'pool shrank to 1'"
scale_journal | grep -E 'pool (grew|held|shrank)' | tee "$out/scale.txt"
check "no OOM kill in the service" bash -c "! journalctl --no-pager -k | grep -q 'oom_memcg=/kqueue.slice/kqueue-dispatcher@scale'"
systemctl disable --now kqueue@scale
rm /etc/kqueue/scale.toml

step "the monitoring files: alert rules and a Grafana dashboard"
check "/usr/share/kqueue/monitoring has the Prometheus rules and the dashboard" \
	test -s /usr/share/kqueue/monitoring/kqueue-rules.yml -a -s /usr/share/kqueue/monitoring/kqueue-dashboard.json

step "pool.idle_exit: a second instance scales to zero and back"
cat >/etc/kqueue/small.toml <<'TOML'
[app]
path = "/srv/app"
user = "www-data"
writable = ["database"]
[app.env]
KQ_PROBE = "1"
[redis]
url = "redis://127.0.0.1:6379/0"
prefix = "laravel_database_"
[[queue]]
name = "small"
[pool]
workers = 1
idle_exit = "3s"
TOML
rcli del "$(key kqtest:runs)" >/dev/null
check "systemctl enable --now kqueue@small" systemctl enable --now kqueue@small
artisan kq:dispatch record --count=2 --queue=small
check "its jobs ran" until_ok 60 ran record-1 1
check "with no work its dispatcher exited" until_ok 60 inactive kqueue-dispatcher@small
check "its poller stays" active kqueue@small
artisan kq:dispatch record --count=2 --queue=small
check "the next job started the dispatcher again through its socket" until_ok 60 ran record-1 2
journal -u kqueue-dispatcher@small | grep -E 'idle|Started|Deactivated' || true
systemctl disable --now kqueue@small

step "the console: kqueue-web@default, started by its socket"
check "systemctl enable --now kqueue-web@default.socket" systemctl enable --now kqueue-web@default.socket
check "nothing runs until someone looks" inactive kqueue-web@default.service
console() { curl -sf --unix-socket /run/kqueue/default.web "http://localhost$1"; }
check "the overview answers through the socket" until_ok 60 bash -c "curl -sf --unix-socket /run/kqueue/default.web http://localhost/api/overview > $out/console-overview.json"
check "the visit started kqueue-web@default" active kqueue-web@default.service
check "it shows the default queue" grep -q '"name":"default"' "$out/console-overview.json"
check "and this instance, from its published state" grep -q '"instance":"default"' "$out/console-overview.json"
console /failed > "$out/console-failed.html" || true
check "its failed jobs page lists the mix's failures, read through the app" grep -q 'FailsManually' "$out/console-failed.html"
web=$(systemctl show -P MainPID kqueue-web@default)
check "the console runs as the app's user (www-data)" test "$(ps -o user= -p "$web")" = www-data
check "with no capabilities (CapEff: 0)" grep -qx 'CapEff:[[:space:]]*0000000000000000' "/proc/$web/status"
w_exp=$(exposure kqueue-web@default.service)
check "systemd-analyze security: the console's exposure $w_exp <= 2.5" awk -v e="$w_exp" 'BEGIN { exit !(e != "" && e <= 2.5) }'
systemctl disable --now kqueue-web@default.socket kqueue-web@default.service

step "a database queue: kqueue@db takes the jobs from Laravel's jobs table on PostgreSQL"
pg() { runuser -u postgres -- psql -qtA "$@"; }
check "postgresql answers" until_ok 60 pg -c "SELECT 1"
pg -c "CREATE ROLE kq LOGIN PASSWORD 'kq'" && pg -c "CREATE DATABASE app OWNER kq"
# The app's queue connection on the jobs table of a PostgreSQL database
# (the fixture reads these from the environment; a real app's .env).
dbenv=(QUEUE_CONNECTION=database DB_QUEUE_CONNECTION=pgsql QDB_SOCKET=127.0.0.1 QDB_DATABASE=app QDB_USERNAME=kq QDB_PASSWORD=kq)
dbartisan() { (cd "$app" && env "${dbenv[@]}" php artisan "$@"); }
need "the jobs table migrated into PostgreSQL" dbartisan migrate --database=pgsql --force
cat >/etc/kqueue/db.toml <<'TOML'
[app]
path = "/srv/app"
user = "www-data"
writable = ["database"]
[app.env]
KQ_PROBE = "1"
QUEUE_CONNECTION = "database"
DB_QUEUE_CONNECTION = "pgsql"
QDB_SOCKET = "127.0.0.1"
QDB_DATABASE = "app"
QDB_USERNAME = "kq"
QDB_PASSWORD = "kq"
[pool]
workers = 2
TOML
systemctl daemon-reload # the generator opens [app] writable to kqueue-dispatcher@db
kqueue check --config /etc/kqueue/db.toml | tee "$out/check-db.txt"
check "kqueue check reaches the jobs table: PostgreSQL 15, FOR UPDATE SKIP LOCKED" grep -q 'reachable, PostgreSQL 15.*table jobs, reserved rows locked with FOR UPDATE SKIP LOCKED' "$out/check-db.txt"
check "with no sandbox warning" bash -c "! grep -q 'warning: sandbox' $out/check-db.txt"
dbdrained() { [ "$(pg -d app -c 'SELECT COUNT(*) FROM jobs')" = 0 ]; }
rcli del "$(key kqtest:runs)" >/dev/null
check "systemctl enable --now kqueue@db" systemctl enable --now kqueue@db
dbartisan kq:dispatch mix
dbartisan kq:dispatch record --count=300
check "every job ran from the table (it is empty)" until_ok 120 dbdrained
check "the chain ran to its end" ran chain-3 1
check "the jobs ran as www-data, through the pool of kqueue-dispatcher@db" active kqueue-dispatcher@db
journal -u kqueue@db -o verbose | grep -m1 '^ *DATABASE=' | tee "$out/journal-db.txt"
check "the poller took the database connection from the app (journal field DATABASE)" grep -q 'DATABASE=pgsql "app", table "jobs"' "$out/journal-db.txt"
rcli del "$(key kqtest:runs)" >/dev/null
dbartisan kq:dispatch sleep --count=6
dbartisan kq:dispatch record --count=300
check "two slow jobs are running" until_ok 60 ran sleep-1 1
check "systemctl restart postgresql while they run, 300 more waiting" systemctl restart postgresql
check "every job ran after the restart" until_ok 180 dbdrained
each_once() { [ "$(rcli hlen "$(key kqtest:runs)")" = 306 ] && ! rcli hvals "$(key kqtest:runs)" | grep -qvx 1; }
check "each exactly once" each_once
journal -u kqueue@db | grep -E 'PostgreSQL is (unreachable|reachable again)' || true
check "kqueue@db stayed active" active kqueue@db
systemctl disable --now kqueue@db

step "the watchdog: a frozen poller is restarted and loses nothing"
rcli del "$(key kqtest:runs)" >/dev/null
before=$(systemctl show -P NRestarts kqueue@default)
pid=$(systemctl show -P MainPID kqueue@default)
kill -STOP "$pid"
artisan kq:dispatch record --count=20
restarted() { [ "$(systemctl show -P NRestarts kqueue@default)" -gt "$before" ] && active kqueue@default; }
check "WatchdogSec ran out and systemd restarted kqueue@default" until_ok 120 restarted
journal -u kqueue@default | grep -m1 -i 'watchdog timeout' || true
check "the jobs dispatched while it was frozen all ran" until_ok 60 drained
check "each exactly once" test "$(runs record-19)" = 1 -a "$(runs record-0)" = 1

step "systemctl stop drains running jobs; a restart picks up the rest"
artisan kq:dispatch sleep --count=6
check "two slow jobs are running" until_ok 30 ran sleep-1 1
check "systemctl stop kqueue@default" systemctl stop kqueue@default
check "nothing is left reserved" test "$(rcli zcard "$(key queues:default:reserved)")" = 0
check "no job failed in the drain" bash -c "! (cd $app && php artisan kq:failed) | grep -q Sleeps"
check "the dispatcher stopped with it" inactive kqueue-dispatcher@default
left=$(rcli llen "$(key queues:default)")
echo "$left jobs wait for the restart"
check "systemctl restart kqueue@default" systemctl restart kqueue@default
check "the rest ran after the restart" until_ok 60 drained
all_once() {
	for i in 0 1 2 3 4 5; do [ "$(runs sleep-$i)" = 1 ] || return 1; done
}
check "every slow job ran exactly once" all_once

step "apt remove, apt purge"
check "apt-get remove kqueue" env DEBIAN_FRONTEND=noninteractive apt-get remove -y -q kqueue
check "kqueue@default is stopped" inactive kqueue@default
check "no kqueue process remains" bash -c '! pgrep -x kqueue'
check "nothing is left reserved" test "$(rcli zcard "$(key queues:default:reserved)")" = 0
check "the config survives remove" test -f /etc/kqueue/default.toml
check "apt-get purge kqueue" env DEBIAN_FRONTEND=noninteractive apt-get purge -y -q kqueue
check "purge removed /etc/kqueue" test ! -e /etc/kqueue

echo
echo "$failures failed"
exit $((failures > 0))
