-- Streamfold: durable subscriptions, one operation on one category partition of a group.
--
-- Every key shares the partition's hash tag `{type:p}`, so each call is atomic, on one
-- node of a Redis Cluster too. The Rust side (groups.rs) validates every argument.
--
-- KEYS[1]  the category stream partition; the Redis consumer group lives on it
-- KEYS[2]  the group's state hash for this partition: settings (start, ack_timeout_ms,
--          max_deliveries, created_ms), c:<consumer> -> last poll (Redis ms),
--          e:<entry id> -> the last error a worker gave for that entry
-- KEYS[3]  the group's parked stream for this partition
-- KEYS[4]  the group's replay list: category entry ids put back by a replay of parked
--          entries, served before new entries
-- KEYS[5]  the partition's trim holds (see holds.lua): field g:<group> is the lowest
--          category entry id the group still needs, kept up to date by every operation
--          that moves it, so the category trim never drops an unacknowledged entry
-- ARGV[1]  the operation: create | destroy | fetch | deliver | settle | status | replay
-- ARGV[2]  the group (the consumer group's name)
--
-- Replies are tables whose first element says what happened ('ok', 'nogroup', ...).

local cat, state, parked, replay, holds = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local op, g = ARGV[1], ARGV[2]
local hold_field = 'g:' .. g

-- The value after `name` in a flat name/value array (XINFO replies, entry fields).
local function field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then return flat[i + 1] end
  end
  return nil
end

-- Values one call passes at most through unpack.
local SLICE = 1000

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The fields of a category entry a parked entry keeps (not the parked entry's own).
local EVENT_FIELDS = {
  event_id = true, aggregate_type = true, aggregate_id = true, event_type = true,
  data = true, timestamp = true, version = true, revision = true,
}

-- Moves pending entry `id` to the parked stream (with the event, why, how often it
-- was delivered and the last error a worker gave), then acknowledges it. An entry
-- the category trim removed is parked without its event ('missing'), so its loss is
-- reported instead of silent.
local function park(id, reason, deliveries, fields)
  if fields == nil then
    local r = redis.call('XRANGE', cat, id, id)
    if r[1] then fields = r[1][2] end
  end
  local f = {'position', id, 'reason', reason, 'deliveries', tostring(deliveries)}
  local err = redis.call('HGET', state, 'e:' .. id)
  if err then f[#f + 1] = 'error'; f[#f + 1] = err end
  if fields then
    for i = 1, #fields, 2 do
      if EVENT_FIELDS[fields[i]] then f[#f + 1] = fields[i]; f[#f + 1] = fields[i + 1] end
    end
  else
    f[#f + 1] = 'missing'; f[#f + 1] = '1'
  end
  redis.call('XADD', parked, '*', unpack(f))
  redis.call('XACK', cat, g, id)
  redis.call('HDEL', state, 'e:' .. id)
end

local function pending_count()
  return redis.call('XPENDING', cat, g)[1]
end

-- The group's last delivered id on this partition, or nil without the group.
local function last_delivered()
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', cat)) do
    if field(info, 'name') == g then return field(info, 'last-delivered-id') end
  end
  return nil
end

-- Records the lowest entry the group still needs: the first after its last delivered
-- one, or an earlier pending one, or an earlier replayed one (state field replay_min,
-- kept while the replay list is not empty). Every pending entry was delivered, so it
-- lies at or before the last delivered one: the last delivered (an XINFO GROUPS,
-- the dearest part) is looked up only when nothing is pending. `last`: the group's
-- last delivered id when the caller knows it; `rmin`: state field replay_min when
-- the caller has read it (false: read it here).
local function update_hold(last, rmin)
  local hold
  local r = redis.pcall('XPENDING', cat, g, '-', '+', 1)
  if r.err then return end -- no group (or no stream) on this partition
  local first = r[1]
  if first then
    hold = first[1]
  else
    last = last or last_delivered()
    if not last then return end
    hold = id_after(last)
  end
  if rmin == false then rmin = redis.call('HGET', state, 'replay_min') end
  if rmin then
    if redis.call('LLEN', replay) == 0 then
      redis.call('HDEL', state, 'replay_min')
    elseif id_key(rmin) < id_key(hold) then
      hold = rmin
    end
  end
  redis.call('HSET', holds, hold_field, hold)
end

-- ARGV[3] start id ('0', '$' or a stream id)  ARGV[4] the start as the caller gave it
-- ARGV[5] ack_timeout_ms  ARGV[6] max_deliveries  ARGV[7] created (ms)
-- -> {'created'} | {'exists', start, ack_timeout_ms, max_deliveries} | {'foreign'}
local function create()
  if redis.call('EXISTS', state) == 1 then
    local s = redis.call('HMGET', state, 'start', 'ack_timeout_ms', 'max_deliveries')
    return {'exists', s[1], s[2], s[3]}
  end
  local start = ARGV[3]
  -- ENTRIESREAD tells Redis how many entries lie before the start, so that XINFO
  -- GROUPS reports the group's lag from the first moment (else null until it catches
  -- up). Only where it is known without counting entries.
  local read = nil
  if redis.call('EXISTS', cat) == 1 then
    local info = redis.call('XINFO', 'STREAM', cat)
    local added, len = field(info, 'entries-added'), field(info, 'length')
    local first = field(info, 'first-entry')
    if start == '$' or id_key(start) >= id_key(field(info, 'last-generated-id')) then
      read = added
    elseif start == '0' or (first and id_key(start) < id_key(first[1])) then
      read = added - len
    end
  elseif start == '0' or start == '$' then
    read = 0
  end
  local args = {'XGROUP', 'CREATE', cat, g, start, 'MKSTREAM'}
  if read then args[#args + 1] = 'ENTRIESREAD'; args[#args + 1] = read end
  local r = redis.pcall(unpack(args))
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'BUSYGROUP', 1, true) then return {'foreign'} end
    return r
  end
  redis.call('HSET', state, 'start', ARGV[4], 'ack_timeout_ms', ARGV[5],
    'max_deliveries', ARGV[6], 'created_ms', ARGV[7])
  -- Our own count of the entries before the group's position, for its lag: Redis
  -- 7.0 does not restore a group's entries-read from its append-only file.
  if read then redis.call('HSET', state, 'read', read) end
  return {'created'}
end

-- -> {'ok', 1 if the group was here else 0}. Deletes the category stream too when the
-- group's creation made it (empty, nothing ever appended, no other group).
local function destroy()
  local existed = redis.call('EXISTS', state)
  if existed == 1 and redis.call('EXISTS', cat) == 1 then
    redis.pcall('XGROUP', 'DESTROY', cat, g)
    local info = redis.call('XINFO', 'STREAM', cat)
    if field(info, 'length') == 0 and field(info, 'entries-added') == 0
      and field(info, 'groups') == 0 then
      redis.call('DEL', cat)
    end
  end
  redis.call('DEL', state, parked, replay)
  redis.call('HDEL', holds, hold_field)
  if redis.call('HLEN', holds) == 1 and redis.call('HEXISTS', holds, HELD) == 1 then
    redis.call('DEL', holds)
  end
  return {'ok', existed}
end

-- Set by an operation that leaves the group's hold where it was: then it is not
-- written again. `known_rmin`: state field replay_min as the operation read it (false:
-- not read); `known_last`: the group's last delivered id if the operation read it.
local hold_kept, known_rmin, known_last = false, false, nil

-- ARGV[3] consumer  ARGV[4] max
-- -> {'nogroup'} | {'ok', {{entry id, delivery count, fields}...}, parked}
--    | {'free', the group's last delivered id} (when there are entries after it)
--
-- The partition hands out entries only while the group has nothing pending on it:
-- so no two events of one aggregate are ever in flight, and one consumer at a time
-- holds the partition. While entries are pending, only those idle past the ack
-- timeout are handed out again (to this consumer, their delivery count raised), or
-- parked once delivered max_deliveries times. A free partition hands out its
-- replayed entries first; with none, it answers 'free' and the caller reads the new
-- entries after the last delivered one itself (no entry goes through Lua: each costs
-- more to carry in and out of Lua than to read), chooses its batch and has them
-- handed out with 'deliver'.
local function fetch()
  local consumer, max = ARGV[3], tonumber(ARGV[4])
  local s = redis.call('HMGET', state, 'ack_timeout_ms', 'max_deliveries', 'read', 'replay_min')
  if not s[1] then return {'nogroup'} end
  local ack, maxd = tonumber(s[1]), tonumber(s[2])
  -- Nothing below changes replay_min: update_hold may use this one.
  known_rmin = s[4] or nil
  redis.call('HSET', state, 'c:' .. consumer, now_ms())
  local out, parked_n = {}, 0

  if pending_count() > 0 then
    local due = redis.call('XPENDING', cat, g, 'IDLE', ack, '-', '+', max)
    -- Nothing due: the partition waits for its pending entries, nothing moved.
    if #due == 0 then hold_kept = true; return {'ok', out, 0} end
    local claim, counts = {}, {}
    for _, p in ipairs(due) do
      if p[4] >= maxd then
        park(p[1], 'max_deliveries', p[4], nil)
        parked_n = parked_n + 1
      else
        claim[#claim + 1] = p[1]
        counts[p[1]] = p[4] + 1
      end
    end
    if #claim > 0 then
      -- XCLAIM (not XAUTOCLAIM): the ids and counts are the ones just looked at.
      local got = redis.call('XCLAIM', cat, g, consumer, ack, unpack(claim))
      local present = {}
      for _, e in ipairs(got) do
        present[e[1]] = true
        out[#out + 1] = {e[1], counts[e[1]], e[2]}
      end
      -- Since 7.0 XCLAIM drops entries trimmed away from the pending list: say so.
      for _, id in ipairs(claim) do
        if not present[id] then
          park(id, 'trimmed', counts[id] - 1, nil)
          parked_n = parked_n + 1
        end
      end
    end
    if #out > 0 or pending_count() > 0 then return {'ok', out, parked_n} end
  end

  -- Free: replayed entries first, then new ones; either way a batch stops before the
  -- first entry whose aggregate it already holds.
  local ids = redis.call('LRANGE', replay, 0, max - 1)
  if #ids > 0 then
    local seen, take, used = {}, {}, 0
    for _, id in ipairs(ids) do
      local r = redis.call('XRANGE', cat, id, id)
      if r[1] then
        local agg = field(r[1][2], 'aggregate_id') or ''
        if seen[agg] then break end
        seen[agg] = true
        take[#take + 1] = id
      end
      used = used + 1
    end
    redis.call('LTRIM', replay, used, -1)
    for _, id in ipairs(take) do
      -- FORCE puts an acknowledged entry back in the pending list: a fresh delivery.
      local got = redis.call('XCLAIM', cat, g, consumer, 0, id, 'FORCE', 'RETRYCOUNT', 1)
      if got[1] then out[#out + 1] = {id, 1, got[1][2]} end
    end
    if #out > 0 then return {'ok', out, parked_n} end
  end

  local last = last_delivered()
  if not last then return {'nogroup'} end
  if parked_n == 0 and #ids == 0 then
    -- Nothing pending or replayed: nothing moved.
    hold_kept = true
  else
    known_last = last
  end
  -- Whether there is anything new (one entry through Lua): a caught-up partition
  -- costs no read of the caller's.
  if not redis.call('XRANGE', cat, '(' .. last, '+', 'COUNT', 1)[1] then
    return {'ok', out, parked_n}
  end
  return {'free', last}
end

-- The group's entry of XINFO GROUPS on this partition, or nil without the group.
local function group_info()
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', cat)) do
    if field(info, 'name') == g then return info end
  end
  return nil
end

-- ARGV[3] consumer  ARGV[4] the group's last delivered id as a fetch gave it ('free')
-- ARGV[5..] the entry ids after it to hand out, in order
-- -> {'nogroup'} | {'moved'} | {'ok', first id, last id, entries handed out}
--
-- Hands out the next new entries: the caller read them after the fetch said the
-- partition was free, and chose them (they stop before an aggregate's second event).
-- Only if the partition is still as the fetch left it (nothing pending, nothing
-- replayed, the same last delivered id); else 'moved': another consumer took the
-- partition in between, or a replay came. The entries after the last delivered one
-- cannot change meanwhile: the hold keeps the trim from them, appends come after.
local function deliver()
  local consumer, expected = ARGV[3], ARGV[4]
  local s = redis.call('HMGET', state, 'ack_timeout_ms', 'read', 'replay_min')
  if not s[1] then return {'nogroup'} end
  known_rmin = s[3] or nil
  local info = group_info()
  if not info then return {'nogroup'} end
  if field(info, 'last-delivered-id') ~= expected or field(info, 'pending') > 0
    or redis.call('LLEN', replay) > 0 then
    hold_kept = true
    return {'moved'}
  end
  if #ARGV < 5 or id_key(ARGV[5]) <= id_key(expected) then
    hold_kept = true
    return redis.error_reply('streamfold groups: deliver takes entries after ' .. expected)
  end
  local got = {}
  local read = field(info, 'entries-read')
  if type(read) == 'number' then
    -- What XREADGROUP does (and how Redis replicates it), without carrying the
    -- entries into Lua: each id enters the pending list with one delivery, then the
    -- group's position and its count of entries read move past the last.
    for i = 5, #ARGV, SLICE do
      local args = {'XCLAIM', cat, g, consumer, 0}
      for j = i, math.min(i + SLICE - 1, #ARGV) do args[#args + 1] = ARGV[j] end
      for _, a in ipairs({'FORCE', 'JUSTID', 'RETRYCOUNT', 1}) do args[#args + 1] = a end
      for _, id in ipairs(redis.call(unpack(args))) do got[#got + 1] = id end
    end
    if #got > 0 then
      redis.call('XGROUP', 'SETID', cat, g, got[#got], 'ENTRIESREAD', read + #got)
    end
  else
    -- Redis does not know the group's count of entries read (its lag): XREADGROUP
    -- itself, which may learn it.
    local r = redis.call('XREADGROUP', 'GROUP', g, consumer, 'COUNT', #ARGV - 4,
      'STREAMS', cat, '>')
    for _, e in ipairs(r and r[1] and r[1][2] or {}) do got[#got + 1] = e[1] end
  end
  if #got == 0 then hold_kept = true; return {'ok', '', '', 0} end
  if s[2] then redis.call('HINCRBY', state, 'read', #got) end
  return {'ok', got[1], got[#got], #got}
end

-- ARGV[3] ack | retry | park | skip  ARGV[4] retry delay (ms)  ARGV[5] reason ('' none)
-- ARGV[6..] entry ids
-- -> {'nogroup'} | {'delay', ack_timeout_ms} | {'ok', {1 done | 0 not pending, ...}}
local function settle()
  if redis.call('EXISTS', state) == 0 then return {'nogroup'} end
  local action, reason = ARGV[3], ARGV[5]
  local idle = 0
  if action == 'retry' then
    local ack = tonumber(redis.call('HGET', state, 'ack_timeout_ms'))
    local delay = tonumber(ARGV[4])
    if delay > ack then return {'delay', ack} end
    -- Idle for ack - delay: the next fetch after `delay` reclaims it. It stays pending
    -- meanwhile, so the partition (and the aggregate's order) waits for it.
    idle = ack - delay
  end
  local done = {}
  if action == 'ack' or action == 'skip' then
    -- One XACK per id (its answer says whether the id was pending: cheaper than
    -- reading the pending list into Lua), then one HDEL of their last errors.
    local errs = {}
    for i = 6, #ARGV do
      local ok = redis.call('XACK', cat, g, ARGV[i])
      done[#done + 1] = ok
      if ok == 1 then errs[#errs + 1] = 'e:' .. ARGV[i] end
    end
    -- In slices: unpack can spread only so many values on Lua's stack.
    for i = 1, #errs, SLICE do
      redis.call('HDEL', state, unpack(errs, i, math.min(i + SLICE - 1, #errs)))
    end
    return {'ok', done}
  end
  for i = 6, #ARGV do
    local id = ARGV[i]
    local ok = 0
    local p = redis.call('XPENDING', cat, g, id, id, 1)
    if p[1] then
      ok = 1
      if reason ~= '' then redis.call('HSET', state, 'e:' .. id, reason) end
      if action == 'retry' then
        redis.call('XCLAIM', cat, g, p[1][2], 0, id, 'IDLE', idle, 'JUSTID')
      else
        park(id, 'nacked', p[1][4], nil)
      end
    end
    done[#done + 1] = ok
  end
  return {'ok', done}
end

-- -> {'nogroup'} | {'ok', now, XINFO GROUPS entry, pending, oldest pending idle (ms),
--     parked, replaying, state hash (flat), pending per consumer, trim held back,
--     undelivered (-1: not known)}
-- A consumer that has not polled for this long and holds nothing is forgotten.
local FORGET_MS = 86400000

local function status()
  if redis.call('EXISTS', state) == 0 then return {'nogroup'} end
  -- Forget consumers gone for a day with nothing pending (workers come and go: a
  -- list of every name ever used would grow without bound).
  local now = now_ms()
  local flat = redis.call('HGETALL', state)
  for i = 1, #flat, 2 do
    local name = string.match(flat[i], '^c:(.*)$')
    if name and now - tonumber(flat[i + 1]) > FORGET_MS then
      local held = 0
      for _, c in ipairs(redis.pcall('XINFO', 'CONSUMERS', cat, g)) do
        if field(c, 'name') == name then held = field(c, 'pending') end
      end
      if held == 0 then
        redis.pcall('XGROUP', 'DELCONSUMER', cat, g, name)
        redis.call('HDEL', state, flat[i])
      end
    end
  end
  local info = nil
  for _, i in ipairs(redis.call('XINFO', 'GROUPS', cat)) do
    if field(i, 'name') == g then info = i end
  end
  if not info then return {'nogroup'} end
  local summary = redis.call('XPENDING', cat, g)
  -- A partition holds at most one fetch's batch (plus replays): a short list.
  local oldest = 0
  for _, p in ipairs(redis.call('XPENDING', cat, g, '-', '+', 1000)) do
    if p[3] > oldest then oldest = p[3] end
  end
  -- Entries the trim kept beyond the category's length, if this group's hold is the
  -- lowest (the one keeping them).
  local held = 0
  local mine, floor = redis.call('HGET', holds, hold_field), lowest_hold(holds)
  if mine and floor and id_key(mine) == id_key(floor) then
    held = tonumber(redis.call('HGET', holds, HELD) or '0')
  end
  -- The lag: entries added to the stream minus those before the group's position.
  local undelivered = -1
  local read = redis.call('HGET', state, 'read')
  if read then
    local added = field(redis.call('XINFO', 'STREAM', cat), 'entries-added')
    undelivered = math.max(0, added - tonumber(read))
  elseif field(info, 'lag') then
    undelivered = field(info, 'lag')
  end
  return {'ok', now, info, summary[1], oldest, redis.call('XLEN', parked),
    redis.call('LLEN', replay), redis.call('HGETALL', state), summary[4] or {}, held,
    undelivered}
end

-- ARGV[3] XRANGE start in the parked stream ('-' or '(id')  ARGV[4] count
-- -> {'nogroup'} | {'ok', moved, kept, last parked id looked at, looked at}
-- Entries whose category entry is gone (trimmed) cannot be delivered again: they stay.
local function replay_parked()
  if redis.call('EXISTS', state) == 0 then return {'nogroup'} end
  local entries = redis.call('XRANGE', parked, ARGV[3], '+', 'COUNT', tonumber(ARGV[4]))
  local moved, kept, last = 0, 0, ''
  for _, e in ipairs(entries) do
    last = e[1]
    local pos = field(e[2], 'position')
    if pos and field(e[2], 'missing') == nil and redis.call('XRANGE', cat, pos, pos)[1] then
      redis.call('RPUSH', replay, pos)
      local rmin = redis.call('HGET', state, 'replay_min')
      if not rmin or id_key(pos) < id_key(rmin) then
        redis.call('HSET', state, 'replay_min', pos)
      end
      redis.call('XDEL', parked, e[1])
      moved = moved + 1
    else
      kept = kept + 1
    end
  end
  if redis.call('EXISTS', parked) == 1 and redis.call('XLEN', parked) == 0 then
    redis.call('DEL', parked)
  end
  return {'ok', moved, kept, last, #entries}
end

-- Every operation that moves what the group needs updates its hold before it returns.
local function holding(reply)
  if reply[1] ~= 'nogroup' and reply[1] ~= 'foreign' and reply[1] ~= 'exists'
    and not hold_kept then
    update_hold(known_last, known_rmin)
  end
  return reply
end

if op == 'create' then return holding(create())
elseif op == 'destroy' then return destroy()
elseif op == 'fetch' then return holding(fetch())
elseif op == 'deliver' then return holding(deliver())
elseif op == 'settle' then return holding(settle())
elseif op == 'status' then return status()
elseif op == 'replay' then return holding(replay_parked())
end
return redis.error_reply('streamfold groups: unknown operation ' .. tostring(op))
