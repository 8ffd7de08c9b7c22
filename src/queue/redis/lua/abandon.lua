-- ABANDON: the submit's second step (BullMQ's add) failed: the job was never accepted. No transition: the record goes.
-- ARGV: P, id -> 1 when removed, 0
local id = ARGV[2]
if redis.call('HGET', jobKey(id), 'state') ~= 'queued' then return 0 end
purge(id)
return 1
