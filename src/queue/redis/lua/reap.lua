-- REAP, run by every node now and then: the running jobs whose worker's heartbeat is gone go running -> lost
-- (never run again), or running -> scheduled when their retry policy lists `lost` and attempts remain; finished jobs older than the retention are forgotten, and so are submits never confirmed.
-- ARGV: P, now, retainMs, retainJobs -> {id, host, instance, pid, ...} of the jobs declared lost
local now = tonumber(ARGV[2])
local lost = {}
local running = redis.call('HGETALL', P .. ':running')
for i = 1, #running, 2 do
  local id, node = running[i], running[i + 1]
  if redis.call('EXISTS', P .. ':node:' .. node) == 0 then
    local info = redis.call('HMGET', jobKey(id), 'host', 'inst', 'pid', 'state')
    local attempt = tonumber(redis.call('HGET', jobKey(id), 'attempt') or '0')
    local delay = info[4] == 'running' and redis.call('HGET', jobKey(id), 'stop') ~= 'cancel' and lostRetryDelay(id, attempt)
    if delay then
      local err = cjson.encode({code = 'WORKER_LOST', message = 'the worker running this job (' .. node .. ') stopped answering; the job is retried'})
      closeAttempt(id, 'lost', ARGV[2], '', err)
      reschedule(id, 'lost', ARGV[2], delay)
      lost[#lost + 1] = id
      lost[#lost + 1] = info[1] or ''
      lost[#lost + 1] = info[2] or ''
      lost[#lost + 1] = info[3] or ''
    elseif info[4] == 'running' then
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
