-- STARTED: the process of a running job exists (no transition): its pid, the secret dropped, then the started event.
-- ARGV: P, id, attempt, pid -> 1 | 0 (not this attempt any more)
local id = ARGV[2]
local r = redis.call('HMGET', jobKey(id), 'state', 'attempt')
if r[1] ~= 'running' or r[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jobKey(id), 'pid', ARGV[4])
redis.call('HDEL', jobKey(id), 'secret')
publish('started', id)
return 1
