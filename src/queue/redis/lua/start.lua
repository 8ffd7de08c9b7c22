-- START: a worker takes a job, queued -> running (only a queued one: a canceled, lost or unknown job is never run,
-- and no job runs twice). `token` is this delivery's: asked again with it (a resent command), START answers the
-- same. The secret (env values, stdin) stays until STARTED.
-- ARGV: P, id, node, host, instance, now, heartbeat, stallMs, token
-- -> false | {'wait'} (not confirmed yet) | {'ok', attempt, spec, secret, grant, owner}
local id = ARGV[2]
local k = jobKey(id)
local state = redis.call('HGET', k, 'state')
if state == 'running' and redis.call('HGET', k, 'token') == ARGV[9] then
  -- the same delivery asks again (its reply was lost and the command resent): the same answer
  local r = redis.call('HMGET', k, 'attempt', 'spec', 'secret', 'grant', 'owner')
  return {'ok', r[1], r[2], r[3] or '', r[4], r[5]}
end
if not state or not mayMove(state, 'running') then return false end
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
return {'ok', tostring(attempt), r[1], r[2] or '', r[3], r[4]}
