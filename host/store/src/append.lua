-- Streamfold: append batches of events to aggregates, each atomically and on its own.
--
-- One call commits one or more appends (a group commit: the host gathers appends to
-- aggregates of one category partition, whose keys share a hash slot, while the
-- previous call runs). Each append keeps its own expected revision, retry detection
-- and reply; one append's conflict or error never affects another's.
--
-- ARGV[1]  m, the number of appends; then, for append j (1..m):
--   KEYS     3 per append: aggregate stream (never trimmed: the source of truth),
--            revision counter hash (rev, and the last batch: last_first, last_rev,
--            last_n, last_pos), category stream (trimmed with MAXLEN ~)
--   ARGV     7 per append, then 5 per event:
--            expected kind: any | exists | exact (no-stream is exact 0);
--            expected revision (exact only); category max length (0 = never trim);
--            aggregate_type; aggregate_id; how far back (entries) a retry of an exact
--            append is looked for; n, the number of events;
--            then per event: event_id, event_type, data, timestamp, version
--
-- KEYS[3m + 1] (default layout) the partition's trim holds (see holds.lua). Every append
--          of one call goes to the same category partition. Without holds each XADD
--          trims with MAXLEN ~; with holds the call trims once at the end, never
--          below the lowest hold, and records how far the trim was held back.
--
-- Replies: one per append, in order:
--          {'ok', first_rev, last_rev, {positions}}
--          {'dup', first_rev, last_rev, {positions}}   the same batch was appended before
--          {'conflict', actual_rev}
--          {'corrupt', key, reason}
--          {'error', message}                          Redis refused a command
-- Nothing of an append is written unless its reply is 'ok'.
--
-- The host puts a second append to one aggregate in a call only after an exact one:
-- a call retried after a lost connection then finds each append it had committed
-- instead of writing it twice (an exact one by its revisions, wherever it lies; any
-- other as its aggregate's last batch).

local PER = 5
-- With holds, the trim runs when the partition is this many entries over its length
-- (a few radix-tree nodes, which is what MAXLEN ~ removes at a time).
local TRIM_STEP = 256
local m = tonumber(ARGV[1])
local holds = nil
if #KEYS > 3 * m then holds = KEYS[3 * m + 1] end
local held_by_readers = holds ~= nil and redis.call('EXISTS', holds) == 1

local function failed(reply) return type(reply) == 'table' and reply.err ~= nil end

-- Appends the batch whose keys start at KEYS[k + 1] and arguments at ARGV[a + 1];
-- returns its reply.
local function append(k, a)
  local agg, revkey, cat = KEYS[k + 1], KEYS[k + 2], KEYS[k + 3]
  local kind = ARGV[a + 1]
  local expected = tonumber(ARGV[a + 2])
  local maxlen = ARGV[a + 3]
  local atype, aid = ARGV[a + 4], ARGV[a + 5]
  local cap = tonumber(ARGV[a + 6])
  local n = tonumber(ARGV[a + 7])
  local BASE = a + 7

  -- A key of the wrong type (another application's, or a hand-made one) must not leave
  -- half a batch behind. Nothing is written before the first XADD to the aggregate
  -- stream, which writes nothing if it fails; the first XADD to the category stream
  -- comes after one aggregate entry, which is taken back if it fails. So the commands
  -- that meet each key first are checked (pcall), instead of asking the three keys'
  -- TYPE up front, which cost a fifth of a single append's time in Redis.
  local function wrong_type(key, want, reply)
    local t = redis.call('TYPE', key)
    if type(t) == 'table' then t = t['ok'] end
    if t ~= 'none' and t ~= want then return {'corrupt', key, 'holds a ' .. t .. ', not a ' .. want} end
    return {'error', reply.err}
  end

  -- The current revision: the counter, or (a stream adopted from the seed, which has no
  -- counter yet) the length of the aggregate stream, which is never trimmed.
  local cur
  local stored = redis.pcall('HGET', revkey, 'rev')
  if failed(stored) then return wrong_type(revkey, 'hash', stored) end
  if stored then
    cur = tonumber(stored)
    if not cur then return {'corrupt', revkey, 'rev is not a number'} end
  else
    cur = redis.pcall('XLEN', agg)
    if failed(cur) then return wrong_type(agg, 'stream', cur) end
  end

  local function event_id_of(entry)
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'event_id' then return fields[i + 1] end
    end
    return nil
  end

  -- entries: the candidate entries in stream order; true if they are exactly this batch.
  local function same_batch(entries)
    if #entries ~= n then return false end
    for i = 1, n do
      if event_id_of(entries[i]) ~= ARGV[BASE + (i - 1) * PER + 1] then return false end
    end
    return true
  end

  local function dup_reply(first_rev, entries)
    local positions = {}
    for i = 1, n do positions[i] = entries[i][1] end
    return {'dup', first_rev, first_rev + n - 1, positions}
  end

  -- Was this batch the last one appended (at first revision want_rev, if given)? O(n).
  local function by_memory(want_rev)
    local m = redis.call('HMGET', revkey, 'last_first', 'last_rev', 'last_n', 'last_pos')
    if m[1] ~= ARGV[BASE + 1] or tonumber(m[3]) ~= n or not m[4] then return nil end
    local first_rev = tonumber(m[2])
    if not first_rev or (want_rev and first_rev ~= want_rev) then return nil end
    local entries = redis.call('XRANGE', agg, m[4], '+', 'COUNT', n)
    if same_batch(entries) then return dup_reply(first_rev, entries) end
    return nil
  end

  -- Are revisions expected+1 .. expected+n this batch? Looks back at most `cap` entries.
  local function by_scan()
    local back = cur - expected
    if back > cap then return nil end
    local newest_first = redis.call('XREVRANGE', agg, '+', '-', 'COUNT', back)
    if #newest_first ~= back then return nil end
    local entries = {}
    for i = 1, n do entries[i] = newest_first[back - i + 1] end
    if same_batch(entries) then return dup_reply(expected + 1, entries) end
    return nil
  end

  if kind == 'exact' then
    if cur ~= expected then
      if cur >= expected + n then
        local dup = by_memory(expected + 1) or by_scan()
        if dup then return dup end
      end
      return {'conflict', cur}
    end
  elseif kind == 'exists' then
    if cur == 0 then return {'conflict', 0} end
    local dup = by_memory(nil)
    if dup then return dup end
  elseif kind == 'any' then
    local dup = by_memory(nil)
    if dup then return dup end
  else
    return {'error', 'streamfold append: unknown expected-revision kind ' .. tostring(kind)}
  end

  -- Appends event o to stream `key` with `call` (redis.pcall for the first event, whose
  -- failure must be caught; redis.call after it, which costs less).
  local function add(call, key, o, rs, trim)
    if trim then
      return call('XADD', key, 'MAXLEN', '~', maxlen, '*',
        'event_id', ARGV[o + 1], 'aggregate_type', atype, 'aggregate_id', aid,
        'event_type', ARGV[o + 2], 'data', ARGV[o + 3], 'timestamp', ARGV[o + 4],
        'version', ARGV[o + 5], 'revision', rs)
    end
    -- The seed's fields, in the seed's order, plus our revision.
    return call('XADD', key, '*',
      'event_id', ARGV[o + 1], 'aggregate_type', atype, 'aggregate_id', aid,
      'event_type', ARGV[o + 2], 'data', ARGV[o + 3], 'timestamp', ARGV[o + 4],
      'version', ARGV[o + 5], 'revision', rs)
  end

  local trim_category = maxlen ~= '0' and not held_by_readers
  local rs = string.format('%d', cur + 1)
  local first = add(redis.pcall, agg, BASE, rs, false)
  if failed(first) then return wrong_type(agg, 'stream', first) end -- nothing written
  local added = add(redis.pcall, cat, BASE, rs, trim_category)
  if failed(added) then
    -- Take back the one aggregate entry, and the stream itself if this append made it.
    if cur == 0 and redis.call('XLEN', agg) == 1 then
      redis.call('DEL', agg)
    else
      redis.call('XDEL', agg, first)
    end
    return wrong_type(cat, 'stream', added)
  end
  -- Both keys are streams now: the rest cannot fail on their type.
  local positions = {first}
  for i = 2, n do
    local o = BASE + (i - 1) * PER
    rs = string.format('%d', cur + i)
    positions[i] = add(redis.call, agg, o, rs, false)
    add(redis.call, cat, o, rs, trim_category)
  end
  local rev = cur + n

  redis.call('HSET', revkey, 'rev', string.format('%d', rev),
    'last_first', ARGV[BASE + 1], 'last_rev', string.format('%d', cur + 1),
    'last_n', string.format('%d', n), 'last_pos', positions[1])
  return {'ok', cur + 1, rev, positions}
end

-- Trims category `cat` to about `maxlen` entries, but never an entry at or above the
-- lowest hold; records in the holds hash how many entries that kept beyond `maxlen`.
local function trim_held(cat, maxlen)
  local excess = redis.call('XLEN', cat) - maxlen
  if excess < TRIM_STEP then
    redis.call('HDEL', holds, HELD)
    return
  end
  local floor = lowest_hold(holds)
  if floor == nil then
    redis.call('XTRIM', cat, 'MAXLEN', '~', maxlen)
    redis.call('DEL', holds)
    return
  end
  -- How many of the entries an exact MAXLEN trim would drop lie below the floor.
  local below = 0
  local first = redis.call('XRANGE', cat, '-', '+', 'COUNT', 1)[1]
  if first and id_key(first[1]) < id_key(floor) then
    below = #redis.call('XRANGE', cat, '-', '(' .. floor, 'COUNT', excess)
  end
  if below >= excess then
    -- MAXLEN ~ removes whole nodes of those entries only: all below the floor.
    redis.call('XTRIM', cat, 'MAXLEN', '~', maxlen)
    redis.call('HDEL', holds, HELD)
  else
    if below > 0 then redis.call('XTRIM', cat, 'MINID', floor) end
    redis.call('HSET', holds, HELD, excess - below)
  end
end

local replies, k, a = {}, 0, 1
local cat, maxlen = nil, '0'
for j = 1, m do
  replies[j] = append(k, a)
  cat, maxlen = KEYS[k + 3], ARGV[a + 3]
  k = k + 3
  a = a + 7 + PER * tonumber(ARGV[a + 7])
end
if held_by_readers and maxlen ~= '0' then
  -- Only when something was written: a failed append must not be followed by a trim
  -- of a key that may not be a stream.
  for _, r in ipairs(replies) do
    if r[1] == 'ok' then
      trim_held(cat, tonumber(maxlen))
      break
    end
  end
end
return replies
