-- CANCEL: queued | scheduled -> canceled at once; a running job is marked (its worker stops it, and FINISH ends it canceled).
-- ARGV: P, id, now, retainJobs -> {'canceled'} (was queued or scheduled) | {'running', node, attempt} | {state} | {} (unknown)
local id = ARGV[2]
local r = redis.call('HMGET', jobKey(id), 'state', 'node', 'attempt')
if not r[1] then return {} end
if r[1] == 'queued' or r[1] == 'scheduled' then
  finish(id, 'canceled', ARGV[3], '', '', '0', '0', false, tonumber(ARGV[4]))
  return {'canceled'}
end
if r[1] == 'running' then
  redis.call('HSET', jobKey(id), 'stop', 'cancel')
  return {'running', r[2], r[3]}
end
return {r[1]}
