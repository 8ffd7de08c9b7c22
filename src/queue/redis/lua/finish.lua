-- FINISH: the worker's run ended, running -> succeeded | failed | timed_out | canceled | lost (fenced by the attempt);
-- or, with a retry delay (queue/retry.ts decided; never after a cancel), running -> scheduled for the next attempt.
-- ARGV: P, id, attempt, state, now, result, error, truncOut, truncErr, retainJobs, retryDelay ('' none)
-- -> 1 (ended) | 2 (scheduled again) | 0 (not this attempt, or already ended)
local id = ARGV[2]
local r = redis.call('HMGET', jobKey(id), 'state', 'attempt', 'stop')
if r[1] ~= 'running' or r[2] ~= ARGV[3] then return 0 end
if ARGV[11] ~= '' and r[3] ~= 'cancel' then
  closeAttempt(id, ARGV[4], ARGV[5], ARGV[6], ARGV[7])
  reschedule(id, ARGV[4], ARGV[5], tonumber(ARGV[11]))
  return 2
end
finish(id, ARGV[4], ARGV[5], ARGV[6], ARGV[7], ARGV[8], ARGV[9], true, tonumber(ARGV[10]))
return 1
