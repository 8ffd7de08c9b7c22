/**
 * The Redis backend's state machine: every change of a job record happens in
 * one of these Lua scripts, atomically, and publishes its event in the same
 * step, so every node sees the same order of states. BullMQ only carries the
 * work to the workers (FIFO per queue, one worker per job); whether a job may
 * start, and how it ends, is decided here.
 *
 * Keys (P is EXECD_REDIS_PREFIX):
 *   P:seq                 acceptance counter (list cursor, FIFO order)
 *   P:jobs                zset seq → id, every kept job
 *   P:wait:<queue>        zset seq → id, the queued jobs of a queue (position, capacity)
 *   P:run:<queue>         set of the running jobs of a queue
 *   P:running             hash id → node id, every running job (the reaper's list)
 *   P:done                zset finishedAt → id, finished jobs (retention)
 *   P:stats               hash "<queue>:processed" / "<queue>:failed"
 *   P:job:<id>            hash, the record (see FIELDS; `secret` holds env values and stdin until the job starts)
 *   P:out:<id>:<stream>   stream of output chunks (`d`), closed by one end entry (`e`, `t` = truncated)
 *   P:idem:<owner>:<key>  string → job id (Idempotency-Key, per owner)
 *   P:unconfirmed         zset confirmBy → id, submits whose BullMQ add has not been confirmed
 *   P:node:<node>         string with a TTL: a worker's heartbeat
 *   P:nodes               set of node ids that ever beat (pruned when their heartbeat is gone)
 * Channels: P:events (lifecycle), P:ctl:<node> (to a worker), P:reply:<node> (its answers).
 *
 * The scripts touch keys they compute from the prefix, so they need one Redis
 * primary (not Redis Cluster), as documented in docs/redis.md.
 */

/** The record fields an event or a view carries, in this order. */
export const FIELDS = [
  'id',
  'seq',
  'queue',
  'state',
  'createdAt',
  'startedAt',
  'finishedAt',
  'owner',
  'spec',
  'pid',
  'result',
  'error',
  'obo',
  'obe',
  'confirmBy',
] as const;

const COMMON = `
local P = ARGV[1]
local FIELDS = {${FIELDS.map((f) => `'${f}'`).join(', ')}}
local function jobKey(id) return P .. ':job:' .. id end
local function nowMs()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
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
  if q then redis.call('ZREM', P .. ':wait:' .. q, id) end
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

-- The one way a job ends: state, time, result/error, indexes, counters, the end of both output streams, retention, event.
local function finish(id, state, now, result, err, truncOut, truncErr, counted, retainJobs)
  local k = jobKey(id)
  local q = redis.call('HGET', k, 'queue')
  redis.call('HSET', k, 'state', state, 'finishedAt', now)
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
`;

/**
 * ARGV: P, id, queue, now, owner, spec (redacted), secret ('' none), grant, digest, capacity, idempotency key ('' none), confirmMs
 * → {'ok', seq, position} | {'dup', id} | {'conflict', id} | {'full'}
 *
 * The record is unconfirmed until CONFIRM (after BullMQ's add): a worker does not start it, and one never
 * confirmed within confirmMs (Redis's clock) was never accepted — the client got a 503 — so REAP forgets it.
 */
export const SUBMIT = `${COMMON}
local id, q, idem = ARGV[2], ARGV[3], ARGV[11]
if idem ~= '' then
  local prior = redis.call('GET', idem)
  if prior then
    local r = redis.call('HMGET', jobKey(prior), 'digest', 'confirmBy', 'state')
    if r[2] and r[3] == 'queued' and tonumber(r[2]) <= nowMs() then
      -- the earlier submit with this key was never confirmed (its client got a 503): forget it, take this one
      purge(prior)
      r[1] = false
    end
    if r[1] == ARGV[9] then return {'dup', prior} end
    if r[1] then return {'conflict', prior} end
    redis.call('DEL', idem)
  end
end
if redis.call('ZCARD', P .. ':wait:' .. q) >= tonumber(ARGV[10]) then return {'full'} end
local seq = redis.call('INCR', P .. ':seq')
local k = jobKey(id)
redis.call('HSET', k, 'id', id, 'seq', seq, 'queue', q, 'state', 'queued', 'createdAt', ARGV[4], 'owner', ARGV[5],
  'spec', ARGV[6], 'grant', ARGV[8], 'digest', ARGV[9], 'idem', idem, 'obo', 0, 'obe', 0, 'attempt', 0)
if ARGV[7] ~= '' then redis.call('HSET', k, 'secret', ARGV[7]) end
local confirmBy = nowMs() + tonumber(ARGV[12])
redis.call('HSET', k, 'confirmBy', confirmBy)
redis.call('ZADD', P .. ':unconfirmed', confirmBy, id)
redis.call('ZADD', P .. ':jobs', seq, id)
redis.call('ZADD', P .. ':wait:' .. q, seq, id)
if idem ~= '' then redis.call('SET', idem, id) end
return {'ok', tostring(seq), redis.call('ZRANK', P .. ':wait:' .. q, id)}
`;

/** ARGV: P, id. The submit's second step (BullMQ's add) failed: the job was never accepted. → 1 when removed */
export const ABANDON = `${COMMON}
local id = ARGV[2]
if redis.call('HGET', jobKey(id), 'state') ~= 'queued' then return 0 end
purge(id)
return 1
`;

/** ARGV: P, id. The submit's BullMQ add landed: the job is accepted (and seen: views skip unconfirmed records). → 1 | 0 (gone: it was abandoned) */
export const CONFIRM = `${COMMON}
local id = ARGV[2]
local k = jobKey(id)
if not redis.call('HGET', k, 'state') then return 0 end
if redis.call('HDEL', k, 'confirmBy') == 1 then
  redis.call('ZREM', P .. ':unconfirmed', id)
  publish('queued', id)
end
return 1
`;

/**
 * ARGV: P, id, node, host, instance, now, heartbeat, stallMs, token. A worker takes a job: only a queued one (a canceled, lost or
 * unknown job is never run, and no job runs twice). `token` is this delivery's: asked again with it (a resent
 * command), START answers the same. The secret (env values, stdin) stays until STARTED.
 * → false | {'wait'} (not confirmed yet) | {attempt, spec, secret, grant, owner}
 */
export const START = `${COMMON}
local id = ARGV[2]
local k = jobKey(id)
local state = redis.call('HGET', k, 'state')
if state == 'running' and redis.call('HGET', k, 'token') == ARGV[9] then
  -- the same delivery asks again (its reply was lost and the command resent): the same answer
  local r = redis.call('HMGET', k, 'attempt', 'spec', 'secret', 'grant', 'owner')
  return {r[1], r[2], r[3] or '', r[4], r[5]}
end
if state ~= 'queued' then return false end
local confirmBy = redis.call('HGET', k, 'confirmBy')
if confirmBy then
  if nowMs() < tonumber(confirmBy) then return {'wait'} end
  purge(id) -- never confirmed: its submit was answered 503, so it never runs
  return false
end
local q = redis.call('HGET', k, 'queue')
local attempt = redis.call('HINCRBY', k, 'attempt', 1)
redis.call('HSET', k, 'state', 'running', 'startedAt', ARGV[6], 'node', ARGV[3], 'host', ARGV[4], 'inst', ARGV[5], 'token', ARGV[9])
redis.call('ZREM', P .. ':wait:' .. q, id)
redis.call('HSET', P .. ':running', id, ARGV[3])
redis.call('SADD', P .. ':run:' .. q, id)
-- the worker's first heartbeat may still be on its way: the reaper must not find its job without one
redis.call('SET', P .. ':node:' .. ARGV[3], ARGV[7], 'PX', ARGV[8], 'NX')
redis.call('SADD', P .. ':nodes', ARGV[3])
local r = redis.call('HMGET', k, 'spec', 'secret', 'grant', 'owner')
return {tostring(attempt), r[1], r[2] or '', r[3], r[4]}
`;

/** ARGV: P, id, attempt, pid. The process runs: its pid, then the started event. → 1 | 0 (not this attempt any more) */
export const STARTED = `${COMMON}
local id = ARGV[2]
local r = redis.call('HMGET', jobKey(id), 'state', 'attempt')
if r[1] ~= 'running' or r[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jobKey(id), 'pid', ARGV[4])
redis.call('HDEL', jobKey(id), 'secret')
publish('started', id)
return 1
`;

/** ARGV: P, id, attempt, state, now, result, error, truncOut, truncErr, retainJobs. → 1 | 0 (fenced: not this attempt, or already ended) */
export const FINISH = `${COMMON}
local id = ARGV[2]
local r = redis.call('HMGET', jobKey(id), 'state', 'attempt')
if r[1] ~= 'running' or r[2] ~= ARGV[3] then return 0 end
finish(id, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], true, tonumber(ARGV[10]))
return 1
`;

/** ARGV: P, id, now, retainJobs. → {'canceled'} (was queued) | {'running', node, attempt} | {state} | {} (unknown) */
export const CANCEL = `${COMMON}
local id = ARGV[2]
local r = redis.call('HMGET', jobKey(id), 'state', 'node', 'attempt')
if not r[1] then return {} end
if r[1] == 'queued' then
  finish(id, 'canceled', ARGV[3], '', '', '0', '0', false, tonumber(ARGV[4]))
  return {'canceled'}
end
if r[1] == 'running' then
  redis.call('HSET', jobKey(id), 'stop', 'cancel')
  return {'running', r[2], r[3]}
end
return {r[1]}
`;

/** ARGV: P, id. → {'ok'} | {state} (not terminal) | {} (unknown) */
export const REMOVE = `${COMMON}
local id = ARGV[2]
local state = redis.call('HGET', jobKey(id), 'state')
if not state then return {} end
if state == 'queued' or state == 'running' then return {state} end
purge(id)
return {'ok'}
`;

/** ARGV: P, id. → {fields…, position} (state false: unknown) */
export const VIEW = `${COMMON}
local f, pos = fields(ARGV[2])
f[#FIELDS + 1] = pos
return f
`;

/**
 * ARGV: P, now, retainMs, retainJobs. Run by every node now and then:
 * the running jobs whose worker's heartbeat is gone end \`lost\` (never run
 * again); finished jobs older than the retention are forgotten, and so are submits never confirmed.
 * → {id, host, instance, pid, …} of the jobs declared lost
 */
export const REAP = `${COMMON}
local now = tonumber(ARGV[2])
local lost = {}
local running = redis.call('HGETALL', P .. ':running')
for i = 1, #running, 2 do
  local id, node = running[i], running[i + 1]
  if redis.call('EXISTS', P .. ':node:' .. node) == 0 then
    local info = redis.call('HMGET', jobKey(id), 'host', 'inst', 'pid', 'state')
    if info[4] == 'running' then
      local err = cjson.encode({code = 'WORKER_LOST', message = 'the worker running this job (' .. node .. ') stopped answering; the job was not run again'})
      finish(id, 'lost', ARGV[2], '', err, '0', '0', true, tonumber(ARGV[4]))
      lost[#lost + 1] = id
      lost[#lost + 1] = info[1] or ''
      lost[#lost + 1] = info[2] or ''
      lost[#lost + 1] = info[3] or ''
    else
      redis.call('HDEL', P .. ':running', id)
    end
  end
end
local abandoned = redis.call('ZRANGEBYSCORE', P .. ':unconfirmed', '-inf', nowMs(), 'LIMIT', 0, 100)
for _, id in ipairs(abandoned) do
  local r = redis.call('HMGET', jobKey(id), 'state', 'confirmBy')
  if r[1] == 'queued' and r[2] then
    purge(id)
  else
    redis.call('ZREM', P .. ':unconfirmed', id)
  end
end
local old = redis.call('ZRANGEBYSCORE', P .. ':done', '-inf', now - tonumber(ARGV[3]), 'LIMIT', 0, 100)
for _, id in ipairs(old) do purge(id) end
return lost
`;
