package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts kqueue runs, each reproducing a Laravel RedisQueue
// operation (see docs/laravel-queue.md) with the same effect on the same
// keys, so that kqueue and `php artisan queue:work` can share queues.
// They are loaded once and run by SHA.

// migrateLua is Laravel's migrateExpiredJobs as a Lua function: move every
// member of the sorted set `from` whose score is <= now, lowest score first,
// onto the list `to`, unchanged, pushing one notify token per member.
const migrateLua = `
local function migrate(from, to, notify, now)
  local due = redis.call('ZRANGEBYSCORE', from, '-inf', now)
  local n = #due
  if n == 0 then return end
  redis.call('ZREMRANGEBYRANK', from, 0, n - 1)
  for first = 1, n, 100 do
    local last = math.min(first + 99, n)
    redis.call('RPUSH', to, unpack(due, first, last))
    for _ = first, last do redis.call('RPUSH', notify, 1) end
  end
end
`

// chargedLua is the copy of a job with its attempt counted, as Laravel's
// pop makes it: the payload decoded by Redis' cjson, attempts+1, encoded
// again — byte for byte what Laravel reserves (cjson's key order, {} for
// [], %.14g numbers). It is made in Redis, only when it is needed: for a
// job that ran long enough to be charged, or is released; a quick job's
// reservation is only ever its original. nil when cjson cannot read the
// payload (the poller quarantines what it cannot parse, and refuses
// nesting deeper than cjson's, so in practice never).
const chargedLua = `
local function charged(job)
  local ok, decoded = pcall(cjson.decode, job)
  if not ok or type(decoded) ~= 'table' or type(decoded['attempts']) ~= 'number' then return nil end
  decoded['attempts'] = decoded['attempts'] + 1
  local encoded, copy = pcall(cjson.encode, decoded)
  if encoded then return copy end
  return nil
end

-- unreserve takes job's reservation out of the reserved set, in whichever
-- form it is there (its original, or its charged copy), and reports
-- whether there was one.
local function unreserve(reserved, job)
  if redis.call('ZREM', reserved, job) == 1 then return true end
  local copy = charged(job)
  return copy ~= nil and redis.call('ZREM', reserved, copy) == 1
end
`

// reserveScript is Laravel's pop(), with one difference that makes taking
// jobs early cost nothing: migrate due delayed jobs, migrate expired
// reservations, then pop — here up to ARGV[3] jobs in one round trip —
// and add each popped payload to the reserved set as it was, attempts not
// counted yet. chargeScript swaps in the copy Laravel's pop would have
// reserved (see chargedLua) when PHP has been running the job a while.
// Until then a reservation that lapses (kqueue gone) is migrated back by
// anyone — kqueue or queue:work — exactly as it was. One notify token is
// taken per job. The payloads are not read here: the poller quarantines
// an entry that is not a Laravel payload (which would make Laravel's own
// script fail after its LPOP and lose the entry).
//
//	KEYS[1] queue  KEYS[2] delayed  KEYS[3] reserved  KEYS[4] notify
//	KEYS[5] this poller's receipt
//	ARGV[1] now (Unix seconds)  ARGV[2] reservation expiry  ARGV[3] max jobs
//	ARGV[4] this call's sequence number (for the receipt)
//	ARGV[5] the queue's fleet-wide cap on reservations (0: none)
//
// With a cap, it pops no more than the cap leaves room for beside the
// queue's live reservations — every consumer's, kqueue's and
// queue:work's alike, so the cap holds across hosts; a dead host's lapse
// and are migrated back like any other.
//
// Returns {jobs, next, capped}: jobs the popped payloads; next the lowest
// score left in delayed (or false); capped 1 when the cap held back some
// of what was asked.
var reserveScript = goredis.NewScript(migrateLua + `
local queue, delayed, reserved, notify, receipt = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now, expiry, max, seq, cap = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])

migrate(delayed, queue, notify, now)
migrate(reserved, queue, notify, now)
local capped = 0
if cap > 0 then
  local room = cap - redis.call('ZCARD', reserved)
  if room < max then
    max, capped = math.max(room, 0), 1
  end
end
-- The last receipt is answered: this call is the one that may go astray.
redis.call('DEL', receipt)

-- The head's jobs, popped with their notify tokens in a few calls (LPOP
-- with a count needs Redis 6.2), reserved in one ZADD per 100.
local jobs = {}
if max > 0 then
  jobs = redis.call('LRANGE', queue, 0, max - 1)
end
local n = #jobs
if n > 0 then
  redis.call('LTRIM', queue, n, -1)
  redis.call('LTRIM', notify, n, -1)
  local scored = {}
  for first = 1, n, 100 do
    local last = math.min(first + 99, n)
    for i = first, last do
      scored[2 * (i - first) + 1] = expiry
      scored[2 * (i - first) + 2] = jobs[i]
    end
    redis.call('ZADD', reserved, unpack(scored, 1, 2 * (last - first + 1)))
  end
  -- The receipt: what this call reserved, under its sequence number, so a
  -- poller whose reply was lost (Redis froze mid-call) can still run them.
  -- It lasts as long as the reservations.
  redis.call('RPUSH', receipt, seq, unpack(jobs))
  redis.call('EXPIREAT', receipt, expiry)
end

local next = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
return {jobs, next[2] or false, capped}
`)

// chargeScript counts the attempt of jobs PHP has been running a while:
// each original payload in the reserved set is replaced by its charged
// copy (see chargedLua), keeping its expiry — what Laravel's pop
// reserves, so from here on the job is Laravel's reserved job in every
// respect. A job whose original is no longer reserved (charged already,
// or its reservation lapsed and it may be another consumer's) is left
// alone.
//
//	KEYS[1] reserved
//	ARGV[i] each job's original payload
//
// Returns how many were charged.
var chargeScript = goredis.NewScript(chargedLua + `
local n = 0
for i = 1, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  local copy = score and charged(ARGV[i])
  if copy then
    redis.call('ZREM', KEYS[1], ARGV[i])
    redis.call('ZADD', KEYS[1], score, copy)
    n = n + 1
  end
end
return n
`)

// deleteScript is Laravel's delete() of jobs: each one's reservation is
// taken out of the reserved set, in whichever form it is there.
//
//	KEYS[1] reserved
//	ARGV[i] each job's original payload
//
// Returns how many reservations it removed.
var deleteScript = goredis.NewScript(chargedLua + `
local n = 0
for i = 1, #ARGV do
  if unreserve(KEYS[1], ARGV[i]) then n = n + 1 end
end
return n
`)

// releaseScript is Laravel's deleteAndRelease(): take the job's reservation
// out of the reserved set — its charged copy, or its original if the
// charge never reached Redis — and put the charged copy (attempts counted:
// the job ran) into the delayed set, due at ARGV[2]. Unlike Laravel it adds
// nothing when the reservation is no longer there (it expired and another
// worker has the job), so a lost lease cannot duplicate a job.
//
//	KEYS[1] delayed  KEYS[2] reserved
//	ARGV[1] original payload  ARGV[2] due time (Unix seconds)
//
// Returns 1 when released, 0 when the reservation was gone.
var releaseScript = goredis.NewScript(chargedLua + `
-- (A payload cjson cannot read goes back uncounted rather than be lost.)
local copy = charged(ARGV[1]) or ARGV[1]
if redis.call('ZREM', KEYS[2], ARGV[1], copy) == 0 then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], copy)
return 1
`)

// returnScript puts a reserved job that never ran back at the head of its
// queue as it was before it was reserved (attempts not counted), with a
// notify token, as if it had not been popped; only while the reservation
// is still there (one that expired may be running elsewhere).
//
//	KEYS[1] reserved  KEYS[2] queue  KEYS[3] notify
//	ARGV[1] original payload
//
// Returns 1 when returned, 0 when the reservation was gone.
var returnScript = goredis.NewScript(chargedLua + `
if not unreserve(KEYS[1], ARGV[1]) then return 0 end
redis.call('LPUSH', KEYS[2], ARGV[1])
redis.call('RPUSH', KEYS[3], 1)
return 1
`)

// extendScript pushes reservations' expiry to ARGV[1], on whichever form
// of each is there; a job whose reservation is gone is left alone.
//
//	KEYS[1] reserved
//	ARGV[1] expiry (Unix seconds)  ARGV[1+i] each job's original payload
//
// Returns how many it extended.
var extendScript = goredis.NewScript(chargedLua + `
local n = 0
for i = 2, #ARGV do
  local job = ARGV[i]
  if not redis.call('ZSCORE', KEYS[1], job) then
    job = charged(job)
    if job and not redis.call('ZSCORE', KEYS[1], job) then job = nil end
  end
  if job then
    redis.call('ZADD', KEYS[1], ARGV[1], job)
    n = n + 1
  end
end
return n
`)

// quarantineScript moves a reserved job whose payload kqueue cannot run
// (not a Laravel payload; or too large to hand on) out of the reserved
// set and onto the quarantine list, as it was before it was reserved.
//
//	KEYS[1] reserved  KEYS[2] quarantine
//	ARGV[1] original payload
//
// Returns 1.
var quarantineScript = goredis.NewScript(chargedLua + `
unreserve(KEYS[1], ARGV[1])
redis.call('RPUSH', KEYS[2], ARGV[1])
return 1
`)

var allScripts = []*goredis.Script{reserveScript, chargeScript, deleteScript, releaseScript, quarantineScript, returnScript, extendScript}
