-- REMOVE: forget a job in a terminal state (job.ts: one with no transition left).
-- ARGV: P, id -> {'ok'} | {state} (not terminal) | {} (unknown)
local id = ARGV[2]
local state = redis.call('HGET', jobKey(id), 'state')
if not state then return {} end
if #(NEXT[state] or {}) > 0 then return {state} end
purge(id)
return {'ok'}
