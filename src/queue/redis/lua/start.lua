-- START: a worker takes a job, queued -> running, or scheduled -> queued -> running once its time has come (only such a one: a canceled, lost or unknown job is never run,
-- and no job runs twice). `token` is this delivery's: asked again with it (a resent command), START answers the
-- same. The secret (env values, stdin) stays until STARTED.
-- ARGV: P, id, node, host, instance, now, heartbeat, stallMs, token
-- -> false | {'wait'} (not confirmed yet, or not its time yet) | {'ok', attempt, spec, secret, grant, owner, queue, obo, obe}
-- (obo, obe: the byte offsets where this attempt's output begins)
local id = ARGV[2]
local k = jobKey(id)
local state = redis.call('HGET', k, 'state')
if state == 'running' and redis.call('HGET', k, 'token') == ARGV[9] then
  -- the same delivery asks again (its reply was lost and the command resent): the same answer
  local r = redis.call('HMGET', k, 'attempt', 'spec', 'secret', 'grant', 'owner', 'queue', 'obo', 'obe')
  local a = getAttempts(id)
  local at = a[#a] and a[#a].output or {}
  return {'ok', r[1], r[2], r[3] or '', r[4], r[5], r[6], tostring(at.stdout or 0), tostring(at.stderr or 0)}
end
local confirmBy = redis.call('HGET', k, 'confirmBy')
if confirmBy and (state == 'queued' or state == 'scheduled') then
  if nowMs() < tonumber(confirmBy) then return {'wait'} end
  purge(id) -- never confirmed: its submit was answered 503, so it never runs
  return false
end
local q = redis.call('HGET', k, 'queue')
if state == 'scheduled' then
  -- delivered at its time (BullMQ's delay) before PROMOTE queued it: queued now, and taken at once; a delivery
  -- ahead of its time (clocks a little apart) waits for it
  local runAt = tonumber(redis.call('HGET', k, 'runAt') or '0')
  if runAt > tonumber(ARGV[6]) then return {'wait'} end
  mustMove(id, 'scheduled', 'queued')
  redis.call('ZREM', P .. ':sched:' .. q, id)
  redis.call('HDEL', k, 'runAt')
  state = 'queued'
end
if not state or not mayMove(state, 'running') then return false end
local attempt = redis.call('HINCRBY', k, 'attempt', 1)
redis.call('HSET', k, 'state', 'running', 'startedAt', ARGV[6], 'node', ARGV[3], 'host', ARGV[4], 'inst', ARGV[5], 'token', ARGV[9])
redis.call('HDEL', k, 'pid', 'stop')
-- the attempt: where it runs and where its output begins (attempts append to the job's streams)
local ob = redis.call('HMGET', k, 'obo', 'obe')
local a = getAttempts(id)
a[#a + 1] = {attempt = attempt, node = ARGV[3], host = ARGV[4], startedAt = tonumber(ARGV[6]), state = 'running',
  output = {stdout = tonumber(ob[1]) or 0, stderr = tonumber(ob[2]) or 0}}
redis.call('HSET', k, 'attempts', cjson.encode(a))
redis.call('ZREM', P .. ':wait:' .. q, id)
redis.call('HSET', P .. ':running', id, ARGV[3])
redis.call('SADD', P .. ':run:' .. q, id)
-- the worker's first heartbeat may still be on its way: the reaper must not find its job without one
redis.call('SET', P .. ':node:' .. ARGV[3], ARGV[7], 'PX', ARGV[8], 'NX')
redis.call('SADD', P .. ':nodes', ARGV[3])
local r = redis.call('HMGET', k, 'spec', 'secret', 'grant', 'owner')
return {'ok', tostring(attempt), r[1], r[2] or '', r[3], r[4], q, tostring(ob[1] or 0), tostring(ob[2] or 0)}
