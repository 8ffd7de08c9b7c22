-- FINISH: the worker's run ended, running -> succeeded | failed | timed_out | canceled | lost (fenced by the attempt).
-- ARGV: P, id, attempt, state, now, result, error, truncOut, truncErr, retainJobs -> 1 | 0 (not this attempt, or already ended)
local id = ARGV[2]
local r = redis.call('HMGET', jobKey(id), 'state', 'attempt')
if r[1] ~= 'running' or r[2] ~= ARGV[3] then return 0 end
finish(id, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], true, tonumber(ARGV[10]))
return 1
