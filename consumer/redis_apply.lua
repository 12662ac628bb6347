-- redis_apply.lua: the Redis sink's one script (consumer/redis_cmd.h has the
-- key layout and why). Embedded into pgcdc-consumer at build time
-- (consumer/meson.build); the sink loads it with SCRIPT LOAD.
--
-- Rows mode: KEYS row, marker pairs; ARGV 'r', format ('hash' 'json'),
-- tombstone ttl, then per row: op ('w' 'd'), version, ttl, ntoast, toast
-- names, npayload, payload. Returns one element per row: 1 applied, 0
-- stale, or {err=...} for that row (apply_row runs under pcall, so one bad
-- row does not undo or stop the others).
-- Truncate mode: KEYS row, marker pairs of one SCAN step; ARGV 't',
-- version, tombstone ttl. Returns how many rows it removed.
-- Only fixed patterns go to string.find and string.match: data is compared
-- with ==, never used as a pattern.
local function newer(a, b)
  if #a ~= #b then return #a > #b end
  return a > b
end
local function version_of(row)
  local t = redis.call('TYPE', row).ok
  if t == 'hash' then
    return t, redis.call('HGET', row, '_pgcdc_lsn')
  elseif t == 'string' then
    local head = redis.call('GETRANGE', row, 0, 40)
    return t, string.match(head, '^{"_pgcdc_lsn":(%d+)')
  end
  return t, false
end
local function set_marker(marker, v, ttl)
  if tonumber(ttl) > 0 then
    redis.call('SET', marker, v, 'EX', ttl)
  else
    redis.call('SET', marker, v)
  end
end
local function skip_ws(s, i)
  return string.find(s, '[^ \t\r\n]', i) or (#s + 1)
end
local function skip_string(s, i)
  local j = i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if not k then return nil end
    if string.sub(s, k, k) == '"' then return k + 1 end
    j = k + 2
  end
end
local function skip_value(s, i)
  local c = string.sub(s, i, i)
  if c == '"' then return skip_string(s, i) end
  if c == '{' or c == '[' then
    local depth, j = 0, i
    while true do
      local k = string.find(s, '["{}%[%]]', j)
      if not k then return nil end
      local ch = string.sub(s, k, k)
      if ch == '"' then
        j = skip_string(s, k)
        if not j then return nil end
      else
        if ch == '{' or ch == '[' then depth = depth + 1 else depth = depth - 1 end
        j = k + 1
        if depth == 0 then return j end
      end
    end
  end
  return string.find(s, '[,}%] \t\r\n]', i) or (#s + 1)
end
-- The raw text of top-level member `name` (given JSON-encoded, as the
-- consumer wrote it) of the object in s, or nil.
local function json_member(s, name)
  local i = skip_ws(s, 1)
  if string.sub(s, i, i) ~= '{' then return nil end
  i = skip_ws(s, i + 1)
  while string.sub(s, i, i) == '"' do
    local ke = skip_string(s, i)
    if not ke then return nil end
    local vs = skip_ws(s, ke)
    if string.sub(s, vs, vs) ~= ':' then return nil end
    vs = skip_ws(s, vs + 1)
    local ve = skip_value(s, vs)
    if not ve then return nil end
    if string.sub(s, i, ke - 1) == name then return string.sub(s, vs, ve - 1) end
    i = skip_ws(s, ve)
    if string.sub(s, i, i) ~= ',' then return nil end
    i = skip_ws(s, i + 1)
  end
  return nil
end
-- The version of a row, read in the sink's own format first: one call
-- (pcall: the key may hold the other format or a foreign type, then
-- TYPE decides). Returns what is there (false: nothing known, i.e.
-- absent or without a version) and the version.
local function read_version(row, fmt)
  if fmt == 'hash' then
    local cur = redis.pcall('HGET', row, '_pgcdc_lsn')
    if type(cur) == 'table' then return version_of(row) end
    if cur then return 'hash', cur end
    return false, false
  end
  local head = redis.pcall('GETRANGE', row, 0, 40)
  if type(head) == 'table' then return version_of(row) end
  local cur = string.match(head, '^{"_pgcdc_lsn":(%d+)')
  if cur then return 'string', cur end
  return false, false
end
-- A row with a version has no marker (a write removes the marker, a
-- delete or truncate removes the row): the marker is read, and
-- removed, only when the row has no version.
local function apply_row(row, marker, op, v, ttl, fmt, tomb, tf, nt, pf, np)
  local t, cur = read_version(row, fmt)
  if cur and not newer(v, cur) then return 0 end
  local m = false
  if not cur then
    m = redis.call('GET', marker)
    if m and not newer(v, m) then return 0 end
  end
  if op == 'd' then
    redis.call('DEL', row)
    set_marker(marker, v, tomb)
    return 1
  end
  local pl = pf + np - 1
  if fmt == 'hash' then
    if nt > 0 and t == 'hash' then
      local args = {'_pgcdc_lsn', v}
      for i = pf, pl do args[#args + 1] = ARGV[i] end
      local names = {}
      for i = 1, nt do names[i] = ARGV[tf + i - 1] end
      local vals = redis.call('HMGET', row, unpack(names))
      for i = 1, nt do
        if vals[i] then
          args[#args + 1] = names[i]
          args[#args + 1] = vals[i]
        end
      end
      redis.call('DEL', row)
      redis.call('HSET', row, unpack(args))
    else
      -- Nothing known there: usually absent, so HSET adds every field; if it
      -- added fewer, a hash without a version was there: replace it.
      if t then redis.call('DEL', row) end
      local added = redis.call('HSET', row, '_pgcdc_lsn', v, unpack(ARGV, pf, pl))
      if not t and added * 2 ~= np + 2 then
        redis.call('DEL', row)
        redis.call('HSET', row, '_pgcdc_lsn', v, unpack(ARGV, pf, pl))
      end
    end
    if ttl ~= '0' then redis.call('EXPIRE', row, ttl) end
  else
    local doc = ARGV[pf]
    if nt > 0 and t == 'string' then
      local old = redis.call('GET', row)
      local extra = {}
      for i = tf, tf + nt - 1 do
        local raw = json_member(old, ARGV[i])
        if raw then extra[#extra + 1] = ARGV[i] .. ':' .. raw end
      end
      if #extra > 0 then
        doc = string.sub(doc, 1, -2) .. ',' .. table.concat(extra, ',') .. '}'
      end
    end
    if ttl ~= '0' then redis.call('SET', row, doc, 'EX', ttl)
    else redis.call('SET', row, doc) end
  end
  if m then redis.call('DEL', marker) end
  return 1
end
if ARGV[1] == 't' then
  local v, n = ARGV[2], 0
  for i = 1, #KEYS - 1, 2 do
    local _, cur = version_of(KEYS[i])
    if cur and newer(v, cur) then
      redis.call('DEL', KEYS[i])
      set_marker(KEYS[i + 1], v, ARGV[3])
      n = n + 1
    end
  end
  return n
end
local fmt, tomb = ARGV[2], ARGV[3]
local out, i, k, last = {}, 4, 1, #ARGV
while i <= last do
  local nt = tonumber(ARGV[i + 3])
  local tf = i + 4
  local np = tonumber(ARGV[tf + nt])
  local ok, res = pcall(apply_row, KEYS[k], KEYS[k + 1], ARGV[i], ARGV[i + 1], ARGV[i + 2],
                        fmt, tomb, tf, nt, tf + nt + 1, np)
  if ok then out[#out + 1] = res
  elseif type(res) == 'table' and res.err then out[#out + 1] = res
  else out[#out + 1] = {err = 'ERR ' .. tostring(res)} end
  i = tf + nt + 1 + np
  k = k + 2
end
return out
