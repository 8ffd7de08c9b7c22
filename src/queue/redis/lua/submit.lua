-- SUBMIT: a new record, state queued, or scheduled with a delayed start (job.ts: newJobRecord).
-- ARGV: P, id, queue, now, owner, spec (redacted), secret ('' none), grant, digest, capacity, idempotency key ('' none), confirmMs,
--   runAt ('' none: queued now), node (the accepting one), maxAttempts
-- -> {'ok', seq, position (-1: scheduled)} | {'dup', id} | {'conflict', id} | {'full'}
-- The record is unconfirmed until CONFIRM (after BullMQ's add): a worker does not start it, and one never
-- confirmed within confirmMs (Redis's clock) was never accepted (the client got a 503), so REAP forgets it.
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
-- capacity counts the queued jobs and the scheduled ones (delayed starts, retries waiting their backoff)
if redis.call('ZCARD', P .. ':wait:' .. q) + redis.call('ZCARD', P .. ':sched:' .. q) >= tonumber(ARGV[10]) then return {'full'} end
local seq = redis.call('INCR', P .. ':seq')
local k = jobKey(id)
redis.call('HSET', k, 'id', id, 'seq', seq, 'queue', q, 'state', 'queued', 'createdAt', ARGV[4], 'owner', ARGV[5],
  'spec', ARGV[6], 'grant', ARGV[8], 'digest', ARGV[9], 'idem', idem, 'obo', 0, 'obe', 0, 'attempt', 0, 'accepted', ARGV[14],
  'maxA', ARGV[15])
if ARGV[7] ~= '' then redis.call('HSET', k, 'secret', ARGV[7]) end
local confirmBy = nowMs() + tonumber(ARGV[12])
redis.call('HSET', k, 'confirmBy', confirmBy)
redis.call('ZADD', P .. ':unconfirmed', confirmBy, id)
redis.call('ZADD', P .. ':jobs', seq, id)
if idem ~= '' then redis.call('SET', idem, id) end
if ARGV[13] ~= '' then
  redis.call('HSET', k, 'state', 'scheduled', 'runAt', ARGV[13])
  redis.call('ZADD', P .. ':sched:' .. q, tonumber(ARGV[13]), id)
  return {'ok', tostring(seq), -1}
end
redis.call('ZADD', P .. ':wait:' .. q, seq, id)
return {'ok', tostring(seq), redis.call('ZRANK', P .. ':wait:' .. q, id)}
