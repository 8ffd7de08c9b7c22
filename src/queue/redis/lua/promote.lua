-- PROMOTE, run by every node now and then: scheduled jobs whose time has come (a delayed start, a retry's backoff)
-- go scheduled -> queued, at the back of their queue (a new place number from P:seq). The node then hands each to
-- BullMQ again (job id <id>.<attempt>, so a delivery already on its way is not doubled); START runs it once only.
-- ARGV: P, now, queue names... -> {id, queue, next attempt, ...}
local now = tonumber(ARGV[2])
local out = {}
for i = 3, #ARGV do
  local q = ARGV[i]
  local due = redis.call('ZRANGEBYSCORE', P .. ':sched:' .. q, '-inf', now, 'LIMIT', 0, 100)
  for _, id in ipairs(due) do
    local k = jobKey(id)
    local r = redis.call('HMGET', k, 'state', 'confirmBy', 'attempt')
    if r[1] == 'scheduled' and not r[2] then
      mustMove(id, 'scheduled', 'queued')
      redis.call('ZREM', P .. ':sched:' .. q, id)
      redis.call('HSET', k, 'state', 'queued')
      redis.call('HDEL', k, 'runAt')
      redis.call('ZADD', P .. ':wait:' .. q, redis.call('INCR', P .. ':seq'), id)
      publish('queued', id)
      out[#out + 1] = id
      out[#out + 1] = q
      out[#out + 1] = tostring((tonumber(r[3]) or 0) + 1)
    elseif r[1] ~= 'scheduled' then
      redis.call('ZREM', P .. ':sched:' .. q, id)
    end
  end
end
return out
