-- Streamfold: stream ids and trim holds, shared by the scripts that need them (the Rust
-- side puts this file in front of each such script).
--
-- A hold is a reader's claim on a category partition: the lowest entry id it still
-- needs. Holds live in one hash per partition, `{type:p}:holds` (field `g:<group>` for
-- a durable subscription; field `~held` is the number of entries the trim kept beyond
-- the configured length because of them). The append script trims the category no
-- further than the lowest hold.

local HELD = '~held'

-- A stream id as a string that sorts like the id (ms and seq padded to 20 digits).
local function id_key(id)
  local ms, seq = string.match(id, '^(%d+)-?(%d*)$')
  if seq == '' then seq = '0' end
  return string.rep('0', 20 - #ms) .. ms .. string.rep('0', 20 - #seq) .. seq
end

-- The smallest id after `id`.
local function id_after(id)
  local ms, seq = string.match(id, '^(%d+)-?(%d*)$')
  if seq == '' then seq = '0' end
  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end

-- The lowest hold in hash `holds`, or nil when nothing holds the partition.
local function lowest_hold(holds)
  local floor = nil
  local all = redis.call('HGETALL', holds)
  for i = 1, #all, 2 do
    if all[i] ~= HELD and (floor == nil or id_key(all[i + 1]) < id_key(floor)) then
      floor = all[i + 1]
    end
  end
  return floor
end
