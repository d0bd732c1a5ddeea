-- Streamfold: projections, one operation on one projection version.
--
-- Every key shares the version's hash tag `{name:vid}`, so each call is atomic, on one
-- node of a Redis Cluster too. The Rust side (projections.rs) validates every argument
-- and bounds the sizes.
--
-- KEYS[1]  docs     hash: document key -> JSON
-- KEYS[2]  keys     sorted set: every document key, score 0 (ZRANGEBYLEX paging)
-- KEYS[3]  ckpt     hash: source partition stream key -> last position applied
-- KEYS[4]  stat     hash: events, commits, last_commit_ms, dead (counters), the
--                   recorded failure (f:* fields), the last commit's id (commit) and
--                   the id of the last change entry trimmed away (trimmed)
-- KEYS[5]  lease    string "<token> <holder>", with a PX expiry
-- KEYS[6]  fence    counter: the last token handed out (never reset by a rebuild)
-- KEYS[7]  dead     stream: dead letters (skipped events with their error)
-- KEYS[8]  changes  stream, capped: one entry per document changed (key, op, position)
-- ARGV[1]  the operation: acquire | renew | release | commit | reset | page | changes
--          | status
--
-- Replies are tables whose first element says what happened ('ok', 'held', 'fenced',
-- 'moved').

local docs, keys, ckpt, stat = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local lease, fence, dead, changes = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local op = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A whole number as text without exponent (Lua prints 1.7e+15 otherwise).
local function int_text(n)
  return string.format('%.0f', n)
end

-- The value after `name` in a flat name/value array (XINFO replies).
local function field(flat, name)
  for i = 1, #flat, 2 do
    if flat[i] == name then return flat[i + 1] end
  end
  return nil
end

-- The stream's last generated id, or '' for a stream that does not exist.
local function last_id(key)
  if redis.call('EXISTS', key) == 0 then return '' end
  return field(redis.call('XINFO', 'STREAM', key), 'last-generated-id') or ''
end

-- Keeps the change stream at about `cap` entries: once it holds a tenth more, the
-- oldest are trimmed exactly (XTRIM MINID) and the last one trimmed is remembered, so
-- that a reader behind it is told it missed changes (Redis 7.0's XINFO does not
-- count trimmed entries in max-deleted-entry-id, and MAXLEN ~ does not say what it
-- removed).
local function trim_changes(cap)
  local len = redis.call('XLEN', changes)
  if len <= cap + math.max(1, math.floor(cap / 10)) then return end
  local gone = redis.call('XRANGE', changes, '-', '+', 'COUNT', len - cap + 1)
  local keep = gone[#gone][1]
  redis.call('XTRIM', changes, 'MINID', keep)
  redis.call('HSET', stat, 'trimmed', gone[#gone - 1][1])
end

-- Whether the lease is held with this token by this holder.
local function holds(token, holder)
  return redis.call('GET', lease) == token .. ' ' .. holder
end

-- ARGV[2] holder  ARGV[3] ttl ms
-- -> {'ok', token} | {'held', holder, token, pttl}
--
-- Takes the lease when it is free or already this holder's (then with a new token,
-- which fences any older incarnation of the same holder name). A fence that does not
-- exist yet (a new version, or one dropped and made again) starts at the Redis clock
-- in microseconds, so a token once handed out is never handed out again.
local function acquire()
  local holder, ttl = ARGV[2], ARGV[3]
  local cur = redis.call('GET', lease)
  if cur then
    local tok, who = string.match(cur, '^(%d+) (.*)$')
    if who ~= holder then
      return {'held', who or '', tok or '0', redis.call('PTTL', lease)}
    end
  end
  local token
  if redis.call('EXISTS', fence) == 0 then
    token = int_text(now_ms() * 1000)
    redis.call('SET', fence, token)
  else
    token = int_text(redis.call('INCR', fence))
  end
  redis.call('SET', lease, token .. ' ' .. holder, 'PX', ttl)
  return {'ok', token}
end

-- ARGV[2] token  ARGV[3] holder  ARGV[4] ttl ms  -> {'ok'} | {'lost'}
local function renew()
  if not holds(ARGV[2], ARGV[3]) then return {'lost'} end
  redis.call('PEXPIRE', lease, ARGV[4])
  return {'ok'}
end

-- ARGV[2] token  ARGV[3] holder  -> {'ok'} | {'lost'}
local function release()
  if not holds(ARGV[2], ARGV[3]) then return {'lost'} end
  redis.call('DEL', lease)
  return {'ok'}
end

-- The fields of a failure, in the order the Rust side sends them.
local FAILURE_FIELDS = {
  'f:stream', 'f:position', 'f:event_id', 'f:aggregate_type', 'f:aggregate_id',
  'f:event_type', 'f:error',
}
-- The fields of a dead letter, in the order the Rust side sends them.
local DEAD_FIELDS = {
  'stream', 'position', 'event_id', 'aggregate_type', 'aggregate_id', 'event_type',
  'data', 'timestamp', 'version', 'revision', 'error',
}

-- ARGV[2] token  ARGV[3] holder  ARGV[4] the commit's id (a retry has the same)
-- then n, n pairs (stream, position): the checkpoint expected (all of it)
-- then n, n pairs (stream, position): the positions to advance
-- then events (how many source events the batch covers)
-- then n, n writes of 4 (op 'p' or 'd', key, doc or '', source position)
-- then n, n dead letters of #DEAD_FIELDS
-- then 0 | 1 followed by #FAILURE_FIELDS values: the failure to record
-- then how many entries the change stream keeps (trimmed once a tenth more)
-- -> {'ok', changes written, last change id or ''} | {'again', 0, ''} (this commit
--    went through already) | {'fenced', current lease or ''}
--    | {'moved', {stream, position, ...}} | {'corrupt', key, its type}
--
-- Redis does not roll a script back: a command that fails half-way leaves the writes
-- before it. So everything that could fail is checked before the first write (the
-- lease, the checkpoint, the keys' types; the Rust side checked the arguments and
-- bounds the counters), and no command after it takes a variable number of
-- arguments from `unpack` (Lua's stack limit): the batch is all or nothing.
local KEY_TYPES = {{docs, 'hash'}, {keys, 'zset'}, {ckpt, 'hash'}, {stat, 'hash'},
  {dead, 'stream'}, {changes, 'stream'}}

local function commit()
  local token, holder = ARGV[2], ARGV[3]
  if not holds(token, holder) then
    return {'fenced', redis.call('GET', lease) or ''}
  end
  for _, kt in ipairs(KEY_TYPES) do
    local t = redis.call('TYPE', kt[1]).ok
    if t ~= 'none' and t ~= kt[2] then return {'corrupt', kt[1], t} end
  end
  local id = ARGV[4]
  if redis.call('HGET', stat, 'commit') == id then return {'again', 0, ''} end
  local i = 5
  local n = tonumber(ARGV[i]); i = i + 1
  local expected = {}
  for _ = 1, n do
    expected[ARGV[i]] = ARGV[i + 1]; i = i + 2
  end
  local current = redis.call('HGETALL', ckpt)
  local same = (#current / 2 == n)
  if same then
    for j = 1, #current, 2 do
      if expected[current[j]] ~= current[j + 1] then same = false; break end
    end
  end
  if not same then return {'moved', current} end

  local advance = {}
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    advance[#advance + 1] = ARGV[i]; advance[#advance + 1] = ARGV[i + 1]; i = i + 2
  end
  local events = ARGV[i]; i = i + 1
  local cap = tonumber(ARGV[#ARGV])

  local written, last_change = 0, ''
  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    local wop, key, doc, pos = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
    i = i + 4
    local changed
    if wop == 'p' then
      changed = redis.call('HGET', docs, key) ~= doc
      if changed then
        redis.call('HSET', docs, key, doc)
        redis.call('ZADD', keys, 0, key)
      end
    else
      changed = redis.call('HDEL', docs, key) == 1
      redis.call('ZREM', keys, key)
    end
    if changed then
      local what = 'delete'
      if wop == 'p' then what = 'put' end
      last_change = redis.call('XADD', changes, '*', 'key', key, 'op', what, 'position', pos)
      written = written + 1
    end
  end

  n = tonumber(ARGV[i]); i = i + 1
  for _ = 1, n do
    local f = {}
    for j, name in ipairs(DEAD_FIELDS) do
      f[#f + 1] = name; f[#f + 1] = ARGV[i + j - 1]
    end
    i = i + #DEAD_FIELDS
    redis.call('XADD', dead, '*', unpack(f))
  end
  if n > 0 then redis.call('HINCRBY', stat, 'dead', n) end

  local failed = ARGV[i] == '1'; i = i + 1
  if failed then
    local f = {}
    for j, name in ipairs(FAILURE_FIELDS) do
      f[#f + 1] = name; f[#f + 1] = ARGV[i + j - 1]
    end
    f[#f + 1] = 'f:at_ms'; f[#f + 1] = int_text(now_ms())
    redis.call('HSET', stat, unpack(f))
  elseif #advance > 0 then
    redis.call('HDEL', stat, 'f:at_ms', unpack(FAILURE_FIELDS))
  end

  if written > 0 then trim_changes(cap) end
  for j = 1, #advance, 2 do redis.call('HSET', ckpt, advance[j], advance[j + 1]) end
  redis.call('HINCRBY', stat, 'events', events)
  redis.call('HINCRBY', stat, 'commits', 1)
  redis.call('HSET', stat, 'last_commit_ms', int_text(now_ms()), 'commit', id)
  return {'ok', written, last_change}
end

-- -> {'ok', reset change id}
--
-- Rebuild from position 0: drops the documents, the checkpoint, the counters, the
-- failure and the dead letters, and the lease (so its holder's next commit is fenced
-- and it starts over with a new lease). The fence stays, so tokens keep growing. The
-- change stream is emptied but kept (its last id, so that new ids follow the ones
-- readers saw) with one 'reset' entry: readers following it know to start over.
local function reset()
  redis.call('DEL', docs, keys, ckpt, stat, lease, dead)
  local last = last_id(changes)
  if last ~= '' then
    redis.call('XTRIM', changes, 'MAXLEN', 0)
    redis.call('HSET', stat, 'trimmed', last)
  end
  local id = redis.call('XADD', changes, '*', 'key', '', 'op', 'reset', 'position', '')
  return {'ok', id}
end

-- ARGV[2] prefix  ARGV[3] the ZRANGEBYLEX start ('[prefix' or '(after', chosen by the
-- Rust side, which compares bytes: Lua's string order follows the locale)  ARGV[4] limit
-- -> {'ok', {key, doc, ...}, more (0|1), last change id or ''}
--
-- Keys and documents read together, so a page never names a key without its document.
local function page()
  local prefix, min, limit = ARGV[2], ARGV[3], tonumber(ARGV[4])
  local found = redis.call('ZRANGEBYLEX', keys, min, '+', 'LIMIT', 0, limit + 1)
  local out, more = {}, 0
  for j, key in ipairs(found) do
    if string.sub(key, 1, #prefix) ~= prefix then break end
    if j > limit then more = 1; break end
    out[#out + 1] = key
    out[#out + 1] = redis.call('HGET', docs, key) or ''
  end
  return {'ok', out, more, last_id(changes)}
end

-- ARGV[2] after ('' for the start)  ARGV[3] count
-- -> {'ok', entries (XRANGE), last generated id, last id trimmed away or ''}
local function read_changes()
  local start = '-'
  if ARGV[2] ~= '' then start = '(' .. ARGV[2] end
  local entries = redis.call('XRANGE', changes, start, '+', 'COUNT', ARGV[3])
  return {'ok', entries, last_id(changes), redis.call('HGET', stat, 'trimmed') or ''}
end

-- -> {'ok', checkpoint (flat), stat (flat), lease or '', lease pttl, dead letters
--    kept, last change id}
local function status()
  return {'ok', redis.call('HGETALL', ckpt), redis.call('HGETALL', stat),
    redis.call('GET', lease) or '', redis.call('PTTL', lease), redis.call('XLEN', dead),
    last_id(changes)}
end

if op == 'acquire' then return acquire()
elseif op == 'renew' then return renew()
elseif op == 'release' then return release()
elseif op == 'commit' then return commit()
elseif op == 'reset' then return reset()
elseif op == 'page' then return page()
elseif op == 'changes' then return read_changes()
elseif op == 'status' then return status()
end
return redis.error_reply('projections.lua: unknown operation ' .. tostring(op))
