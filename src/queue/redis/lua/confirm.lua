-- CONFIRM: the submit's BullMQ add landed: the job is accepted, still queued, and seen (views skip unconfirmed records).
-- ARGV: P, id -> 1 | 0 (gone: it was abandoned)
local id = ARGV[2]
local k = jobKey(id)
if not redis.call('HGET', k, 'state') then return 0 end
if redis.call('HDEL', k, 'confirmBy') == 1 then
  redis.call('ZREM', P .. ':unconfirmed', id)
  publish('queued', id)
end
return 1
