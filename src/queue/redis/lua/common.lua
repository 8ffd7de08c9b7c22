-- Shared by every script (prepended to each at load, after the generated FIELDS and NEXT tables:
-- FIELDS is the record's field order, NEXT is queue/job.ts's transition table).
local P = ARGV[1]
local function jobKey(id) return P .. ':job:' .. id end
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- job.ts's transition table, checked before a script writes anything (a script's writes are not undone by an error).
local function mayMove(from, to)
  for _, s in ipairs(NEXT[from] or {}) do
    if s == to then return true end
  end
  return false
end
local function mustMove(id, from, to)
  if not mayMove(from, to) then error('job ' .. id .. ': no transition ' .. tostring(from) .. ' -> ' .. to) end
end

local function fields(id)
  local f = redis.call('HMGET', jobKey(id), unpack(FIELDS))
  local pos = false
  if f[4] == 'queued' then pos = redis.call('ZRANK', P .. ':wait:' .. f[3], id) end
  return f, pos
end

local function publish(t, id)
  local f, pos = fields(id)
  redis.call('PUBLISH', P .. ':events', cjson.encode({t = t, f = f, pos = pos}))
end

-- Forget a job: record, output, idempotency key, indexes (its place in line too); viewers are told.
local function purge(id)
  local k = jobKey(id)
  local q = redis.call('HGET', k, 'queue')
  if q then
    redis.call('ZREM', P .. ':wait:' .. q, id)
    redis.call('ZREM', P .. ':sched:' .. q, id)
  end
  local idem = redis.call('HGET', k, 'idem')
  if idem and idem ~= '' then
    if redis.call('GET', idem) == id then redis.call('DEL', idem) end
  end
  redis.call('DEL', k, P .. ':out:' .. id .. ':stdout', P .. ':out:' .. id .. ':stderr')
  redis.call('ZREM', P .. ':jobs', id)
  redis.call('ZREM', P .. ':done', id)
  redis.call('ZREM', P .. ':unconfirmed', id)
  redis.call('PUBLISH', P .. ':events', cjson.encode({t = 'removed', id = id}))
end

-- The record's attempts (a JSON array; cjson writes an empty one as {}, read back the same).
local function getAttempts(id)
  local s = redis.call('HGET', jobKey(id), 'attempts')
  if not s or s == '' then return {} end
  return cjson.decode(s)
end

-- The running attempt ends: its time, state, result and error (kept as the JSON text the worker sent).
local function closeAttempt(id, state, now, result, err)
  local a = getAttempts(id)
  local last = a[#a]
  if not last or last.state ~= 'running' then return end
  last.state = state
  last.finishedAt = tonumber(now)
  last.result = result
  last.error = err
  redis.call('HSET', jobKey(id), 'attempts', cjson.encode(a))
end

-- queue/retry.ts retryDelay for a lost attempt: the wait in ms, or false when the job is not retried.
local function lostRetryDelay(id, attempt)
  local ok, spec = pcall(cjson.decode, redis.call('HGET', jobKey(id), 'spec') or '')
  if not ok or type(spec) ~= 'table' or type(spec.retry) ~= 'table' then return false end
  local retry = spec.retry
  if type(retry.attempts) ~= 'number' or attempt >= retry.attempts or type(retry.on) ~= 'table' then return false end
  local listed = false
  for _, s in ipairs(retry.on) do
    if s == 'lost' then listed = true end
  end
  if not listed then return false end
  local base = tonumber(retry.backoffMs) or 1000
  local wait = base
  if retry.backoff ~= 'fixed' then wait = base * 2 ^ math.min(attempt - 1, 40) end
  return math.min(wait, 3600000)
end

-- running -> scheduled: the attempt ended and the job waits `delay` ms, off the queue, counted against its capacity
-- (P:sched:<queue>); PROMOTE queues it at the back once the time comes. Counted like any attempt that ended.
local function reschedule(id, state, now, delay)
  local k = jobKey(id)
  local r = redis.call('HMGET', k, 'queue', 'state')
  local q = r[1]
  mustMove(id, r[2], 'scheduled')
  local runAt = tonumber(now) + delay
  redis.call('HSET', k, 'state', 'scheduled', 'runAt', runAt)
  redis.call('HDEL', k, 'pid', 'stop')
  redis.call('HDEL', P .. ':running', id)
  redis.call('SREM', P .. ':run:' .. q, id)
  redis.call('ZADD', P .. ':sched:' .. q, runAt, id)
  redis.call('HINCRBY', P .. ':stats', q .. ':processed', 1)
  if state == 'failed' or state == 'timed_out' or state == 'lost' then redis.call('HINCRBY', P .. ':stats', q .. ':failed', 1) end
  publish('queued', id)
  return runAt
end

-- The one way a job ends (job.ts: queued|running -> a terminal state): state, time, result/error, indexes,
-- counters, the end of both output streams, retention, event.
local function finish(id, state, now, result, err, truncOut, truncErr, counted, retainJobs)
  local k = jobKey(id)
  local r = redis.call('HMGET', k, 'queue', 'state')
  local q = r[1]
  mustMove(id, r[2], state)
  if r[2] == 'running' then closeAttempt(id, state, now, result, err) end
  redis.call('HSET', k, 'state', state, 'finishedAt', now)
  redis.call('HDEL', k, 'runAt')
  redis.call('ZREM', P .. ':sched:' .. q, id)
  if result ~= '' then redis.call('HSET', k, 'result', result) end
  if err ~= '' then redis.call('HSET', k, 'error', err) end
  redis.call('HDEL', k, 'secret')
  redis.call('HDEL', P .. ':running', id)
  redis.call('SREM', P .. ':run:' .. q, id)
  redis.call('ZREM', P .. ':wait:' .. q, id)
  if counted then
    redis.call('HINCRBY', P .. ':stats', q .. ':processed', 1)
    if state == 'failed' or state == 'timed_out' or state == 'lost' then redis.call('HINCRBY', P .. ':stats', q .. ':failed', 1) end
  end
  redis.call('XADD', P .. ':out:' .. id .. ':stdout', '*', 'e', '1', 't', truncOut)
  redis.call('XADD', P .. ':out:' .. id .. ':stderr', '*', 'e', '1', 't', truncErr)
  redis.call('ZADD', P .. ':done', now, id)
  publish('finished', id)
  while redis.call('ZCARD', P .. ':done') > retainJobs do
    local oldest = redis.call('ZRANGE', P .. ':done', 0, 0)
    purge(oldest[1])
  end
end
