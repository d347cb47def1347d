-- PastSet elements in Redis: the server-side half of pastset.transport.redis_store.
--
-- Each script below starts at a line "--! NAME" and runs with the PRELUDE in
-- front of it.  Every element script gets KEYS[1] = the element's meta hash,
-- "{PREFIX:eID}:m"; the element's other keys share its hash tag, so one element
-- lives in one hash slot of a Redis Cluster and every script here is atomic on
-- its element.  The keys (after the tag and ':'):
--   m   hash: template (wire bytes), last, base, delta, leases, tseq, deleted
--   h   hash: index -> wire bytes of every stored tuple (observed ones until axe)
--   q   list: "JOB:bytes" of the unobserved tuples, oldest first (first = last - LLEN q)
--   mq  list: ticket numbers of blocked moves, in the order they blocked
--   tk  hash: ticket -> tuple bytes, ticket..":w" -> waiter key of its last tuple
--   wi  list: waiter keys of blocked indexed observes
--   ls  set:  lease owners (connection names) that may hold p:OWNER lists
--   p:OWNER  list: "JOB:bytes" leased to that connection, oldest first
--   done set: "ELEMENT:JOB" tokens of results already moved by an ack
--   wt  hash: connection name -> "TASK|o", "TASK|i:INDEX" or "TASK|m" while a spawned task waits
--   rq  hash: connection name -> number of its last move (on a cluster: a move sent again runs once)
--   f:OWNER:N  list: "JOB:bytes" taken by that connection's observe number N (on a cluster), until its next
-- Errors are replies "ERRORCLASS message"; the client raises that PastSet error.

--! PRELUDE
local m = KEYS[1]
local b = string.sub(m, 1, -2)
local function K(s) return b .. s end
local function check()
  local d = redis.call('HGET', m, 'deleted')
  if d then return d end
  if redis.call('EXISTS', m) == 0 then return 'ElementDeletedError the element no longer exists (its run ended or it was deleted)' end
  return nil
end
local function last() return tonumber(redis.call('HGET', m, 'last') or '0') end
local function append(data, job)
  local i = redis.call('HINCRBY', m, 'last', 1) - 1
  redis.call('HSET', K('h'), i, data)
  if job == nil then job = i end
  redis.call('RPUSH', K('q'), job .. ':' .. data)
  return i
end
local function wake_indexed(word)
  local ws = redis.call('LRANGE', K('wi'), 0, -1)
  if #ws > 0 then
    for _, w in ipairs(ws) do
      redis.call('RPUSH', w, word)
      redis.call('PEXPIRE', w, 600000)
    end
    redis.call('DEL', K('wi'))
  end
end
local function room()
  local d = tonumber(redis.call('HGET', m, 'delta') or '0')
  if d == nil or d <= 0 then return -1 end
  return d - redis.call('LLEN', K('q'))
end
local function release()
  local moved = 0
  while true do
    local t = redis.call('LINDEX', K('mq'), 0)
    if not t then break end
    local r = room()
    if r ~= -1 and r <= 0 then break end
    redis.call('LPOP', K('mq'))
    local data = redis.call('HGET', K('tk'), t)
    local w = redis.call('HGET', K('tk'), t .. ':w')
    redis.call('HDEL', K('tk'), t, t .. ':w')
    append(data)
    moved = moved + 1
    if w then
      redis.call('RPUSH', w, 'done')
      redis.call('PEXPIRE', w, 600000)
    end
  end
  if moved > 0 then wake_indexed('1') end
  return moved
end

--! init
-- ARGV: template bytes, leases (0/1).  Idempotent: the first caller's values stay.
redis.call('HSETNX', m, 'template', ARGV[1])
redis.call('HSETNX', m, 'leases', ARGV[2])
redis.call('HSETNX', m, 'last', 0)
redis.call('HSETNX', m, 'base', 0)
local d = redis.call('HGET', m, 'deleted')
if d then return redis.error_reply(d) end
return redis.call('HGET', m, 'leases')

--! move
-- ARGV: waiter key, request "OWNER|N" or '', then the tuples' bytes.  Appends what
-- fits; the rest becomes tickets behind earlier blocked moves.  Returns {} when
-- all moved, else the ticket numbers (the waiter key gets "done" when the last of
-- them moved).  A request the element already ran (the same OWNER and N, sent
-- again after a failover) changes nothing and returns {}.
local err = check()
if err then return redis.error_reply(err) end
if ARGV[2] ~= '' then
  local owner, seq = string.match(ARGV[2], '^(.*)|(%d+)$')
  if redis.call('HGET', K('rq'), owner) == seq then return {} end
  redis.call('HSET', K('rq'), owner, seq)
end
local i = 3
if redis.call('LLEN', K('mq')) == 0 then
  while i <= #ARGV do
    local r = room()
    if r ~= -1 and r <= 0 then break end
    append(ARGV[i])
    i = i + 1
  end
  if i > 3 then wake_indexed('1') end
end
local tickets = {}
while i <= #ARGV do
  local t = redis.call('HINCRBY', m, 'tseq', 1)
  redis.call('HSET', K('tk'), t, ARGV[i])
  redis.call('RPUSH', K('mq'), t)
  tickets[#tickets + 1] = t
  i = i + 1
end
if #tickets > 0 then
  redis.call('HSET', K('tk'), tickets[#tickets] .. ':w', ARGV[1])
end
return tickets

--! move_once
-- ARGV: token, waiter key, tuple bytes.  A move that happens at most once per
-- token (a leased job's result): returns {} also when the token was seen.
local err = check()
if err then return redis.error_reply(err) end
if redis.call('SADD', K('done'), ARGV[1]) == 0 then return {} end
if redis.call('LLEN', K('mq')) == 0 then
  local r = room()
  if r == -1 or r > 0 then
    append(ARGV[3])
    wake_indexed('1')
    return {}
  end
end
local t = redis.call('HINCRBY', m, 'tseq', 1)
redis.call('HSET', K('tk'), t, ARGV[3])
redis.call('HSET', K('tk'), t .. ':w', ARGV[2])
redis.call('RPUSH', K('mq'), t)
return {t}

--! cancel
-- ARGV: tickets of a move that timed out; token (or '') to forget.  Returns how
-- many tickets were still waiting (and are now withdrawn).
local n = 0
for i = 2, #ARGV do
  if redis.call('HEXISTS', K('tk'), ARGV[i]) == 1 then
    redis.call('LREM', K('mq'), 1, ARGV[i])
    redis.call('HDEL', K('tk'), ARGV[i], ARGV[i] .. ':w')
    n = n + 1
  end
end
if n > 0 and ARGV[1] ~= '' then redis.call('SREM', K('done'), ARGV[1]) end
return n

--! release
-- After an unindexed observe (run on the same connection right after its BLPOP):
-- let blocked moves in, keep a deletion's wake-up going; ARGV[1]: extra tuples
-- to take (observe_many), ARGV[2]: lease owner or '', ARGV[3]: the caller's entry in wt or '',
-- ARGV[4] (optional): the caller's in-flight list ("f:OWNER:N") that takes the extra tuples, or ''.
if ARGV[3] ~= '' then redis.call('HDEL', K('wt'), ARGV[3]) end
local err = check()
if err then
  if redis.call('LLEN', K('q')) == 0 then redis.call('RPUSH', K('q'), 'D:' .. err) end
  return redis.error_reply(err)
end
local more = tonumber(ARGV[1])
local owner = ARGV[2]
local dest = ARGV[4] or ''
local taken = {}
if owner ~= '' then redis.call('SADD', K('ls'), owner) end
while #taken < more do
  local item
  if owner ~= '' then
    item = redis.call('LMOVE', K('q'), K('p:' .. owner), 'LEFT', 'RIGHT')
  elseif dest ~= '' then
    item = redis.call('LMOVE', K('q'), K(dest), 'LEFT', 'RIGHT')
  else
    item = redis.call('LPOP', K('q'))
  end
  if not item then break end
  taken[#taken + 1] = item
end
release()
return taken

--! read
-- ARGV: index, waiter key.  {1, bytes} if there, {0} after registering the waiter.
local err = check()
if err then return redis.error_reply(err) end
local i = tonumber(ARGV[1])
local base = tonumber(redis.call('HGET', m, 'base') or '0')
if i < base then
  return redis.error_reply('ExpiredError ' .. base)  -- the client words it, with the template
end
if i < last() then return {1, redis.call('HGET', K('h'), i)} end
redis.call('RPUSH', K('wi'), ARGV[2])
return {0}

--! info
-- ARGV: what ('first', 'last', 'template', 'stats').
local err = check()
if err then return redis.error_reply(err) end
local l = last()
if ARGV[1] == 'last' then return l end
if ARGV[1] == 'first' then return l - redis.call('LLEN', K('q')) end
if ARGV[1] == 'template' then return redis.call('HGET', m, 'template') end
return {redis.call('HGET', m, 'template'), l - redis.call('LLEN', K('q')), l,
        redis.call('HGET', m, 'delta') or '', redis.call('HLEN', K('h')),
        redis.call('HGET', m, 'leases') or '0', redis.call('LLEN', K('mq'))}

--! delta
-- ARGV: '' to read, else the new delta.  Returns it ('' for none).
local err = check()
if err then return redis.error_reply(err) end
if ARGV[1] ~= '' then
  redis.call('HSET', m, 'delta', ARGV[1])
  release()
end
return redis.call('HGET', m, 'delta') or ''

--! axe
-- ARGV: index.  Frees stored tuples below min(index, first).
local err = check()
if err then return redis.error_reply(err) end
local first = last() - redis.call('LLEN', K('q'))
local upto = math.min(tonumber(ARGV[1]), first)
local base = tonumber(redis.call('HGET', m, 'base') or '0')
if upto > base then
  for k = base, upto - 1 do redis.call('HDEL', K('h'), k) end
  redis.call('HSET', m, 'base', upto)
end
return 0

--! ack
-- ARGV: owner.  Drops the owner's oldest lease; returns its job number, or an error.
local item = redis.call('LPOP', K('p:' .. ARGV[1]))
if not item then
  local err = check()
  if err then return redis.error_reply(err) end
  return redis.error_reply('PastSetValueError nothing to acknowledge: this thread holds no unacknowledged tuple of ' ..
    'that element (ack follows an unindexed observe of an element entered with leases=True)')
end
return string.match(item, '^[^:]*')

--! oldest_lease
-- ARGV: owner.  The job number of the owner's oldest lease, or nil.
local item = redis.call('LINDEX', K('p:' .. ARGV[1]), 0)
if not item then
  local err = check()
  if err then return redis.error_reply(err) end
  return redis.error_reply('PastSetValueError nothing to acknowledge: this thread holds no unacknowledged tuple of ' ..
    'that element (ack follows an unindexed observe of an element entered with leases=True)')
end
return string.match(item, '^[^:]*')

--! hand_back
-- ARGV: owners whose connections are gone.  Their leased tuples are moved again,
-- oldest first, whatever delta says (as the built-in server does); returns how many.
if check() then return 0 end
local n = 0
for _, owner in ipairs(ARGV) do
  while true do
    local item = redis.call('LPOP', K('p:' .. owner))
    if not item then break end
    local job, data = string.match(item, '^([^:]*):(.*)$')
    if job ~= 'D' then
      append(data, job)
      n = n + 1
    end
  end
  redis.call('SREM', K('ls'), owner)
end
if n > 0 then wake_indexed('1') end
return n

--! owners
-- The lease owners that hold tuples.
if check() then return {} end
local out = {}
for _, o in ipairs(redis.call('SMEMBERS', K('ls'))) do
  if redis.call('EXISTS', K('p:' .. o)) == 1 then out[#out + 1] = o else redis.call('SREM', K('ls'), o) end
end
return out

--! delete
-- ARGV: the reason: "ERRORCLASS message" (ElementDeletedError, or RunEndedError at a run's end).  Frees the tuples, fails
-- every later call, wakes every blocked one; returns the template bytes.
local template = redis.call('HGET', m, 'template')
if not template or redis.call('HGET', m, 'deleted') then return template end
redis.call('HSET', m, 'deleted', ARGV[1])
for _, o in ipairs(redis.call('SMEMBERS', K('ls'))) do redis.call('DEL', K('p:' .. o)) end
for _, t in ipairs(redis.call('LRANGE', K('mq'), 0, -1)) do
  local w = redis.call('HGET', K('tk'), t .. ':w')
  if w then
    redis.call('RPUSH', w, 'deleted')
    redis.call('PEXPIRE', w, 600000)
  end
end
wake_indexed('deleted')
redis.call('DEL', K('h'), K('q'), K('mq'), K('tk'), K('ls'), K('done'), K('wt'), K('rq'))
redis.call('RPUSH', K('q'), 'D:' .. ARGV[1])
return template

--! enter
-- Registry script: KEYS[1] = "{PREFIX}:reg"; ARGV: template bytes, leases.
-- Returns "ID:LEASES" of the element for that template, creating it if needed.
local got = redis.call('HGET', KEYS[1], ARGV[1])
if got then return got end
local id = redis.call('HINCRBY', KEYS[1] .. 'n', 'next', 1)
got = id .. ':' .. ARGV[2]
redis.call('HSET', KEYS[1], ARGV[1], got)
return got

--! forget
-- Registry script: KEYS[1] = "{PREFIX}:reg"; ARGV: template bytes, element id.
local got = redis.call('HGET', KEYS[1], ARGV[1])
if got and string.match(got, '^[^:]*') == ARGV[2] then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
