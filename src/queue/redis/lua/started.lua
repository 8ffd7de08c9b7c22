-- STARTED: the process of a running job exists (no transition): its pid, the secret dropped (on its last attempt),
-- then the started event.
-- ARGV: P, id, attempt, pid -> 1 | 0 (not this attempt any more)
local id = ARGV[2]
local r = redis.call('HMGET', jobKey(id), 'state', 'attempt', 'maxA')
if r[1] ~= 'running' or r[2] ~= ARGV[3] then return 0 end
redis.call('HSET', jobKey(id), 'pid', ARGV[4])
-- a job with attempts left keeps its secret for them (FINISH's terminal step drops it)
if tonumber(r[2]) >= (tonumber(r[3]) or 1) then redis.call('HDEL', jobKey(id), 'secret') end
publish('started', id)
return 1
