-- redis_apply.lua: the Redis sink's one script (consumer/redis_cmd.h has the
-- key layout and why). Embedded into pgcdc-consumer at build time
-- (consumer/meson.build); the sink loads it with SCRIPT LOAD.
--
-- Rows mode: KEYS row, marker pairs; ARGV 'r', tombstone ttl, then per
-- row: op ('w' 'd'), version, ttl, kind ('hash' 'json' 'string': the
-- format of a write-through table; 'inval': a table in invalidate mode),
-- ntoast, toast names, npayload, payload. Returns one element per row: 1
-- applied, 0 stale, or {err=...} for that row (each row runs under pcall,
-- so one bad row does not undo or stop the others).
-- Truncate mode: KEYS row, marker pairs of one SCAN step; ARGV 't',
-- version, tombstone ttl (for 'inval': the stamp's), kind. Returns how
-- many rows it removed.
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
local function set_with_ttl(row, value, ttl)
  if ttl ~= '0' then redis.call('SET', row, value, 'EX', ttl)
  else redis.call('SET', row, value) end
end
-- The document `doc` with the members named ARGV[tf .. tf+nt-1] (unchanged
-- TOAST columns, JSON-encoded names) taken from the stored document `old`.
local function keep_toast(doc, old, tf, nt)
  local extra = {}
  for i = tf, tf + nt - 1 do
    local raw = json_member(old, ARGV[i])
    if raw then extra[#extra + 1] = ARGV[i] .. ':' .. raw end
  end
  if #extra == 0 then return doc end
  if doc == '{}' then return '{' .. table.concat(extra, ',') .. '}' end
  return string.sub(doc, 1, -2) .. ',' .. table.concat(extra, ',') .. '}'
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
      doc = keep_toast(doc, redis.call('GET', row), tf, nt)
    end
    set_with_ttl(row, doc, ttl)
  end
  if m then redis.call('DEL', marker) end
  return 1
end
-- Format 'string': the value is the row's JSON and nothing else, so the
-- version lives in the marker key, which then holds the version of the
-- row's last change, write or delete. After a write it expires with the
-- row (the same TTL), after a delete with the tombstone TTL. Without a
-- marker, a row the table wrote in another format still has its version.
local function apply_string(row, marker, op, v, ttl, tomb, tf, nt, pf)
  local cur = redis.call('GET', marker)
  if not cur then
    local _
    _, cur = version_of(row)
  end
  if cur and not newer(v, cur) then return 0 end
  if op == 'd' then
    redis.call('DEL', row)
    set_marker(marker, v, tomb)
    return 1
  end
  local doc = ARGV[pf]
  if nt > 0 then
    local old = redis.pcall('GET', row)
    if type(old) == 'string' then doc = keep_toast(doc, old, tf, nt) end
  end
  set_with_ttl(row, doc, ttl)
  set_marker(marker, v, ttl)
  return 1
end
-- Mode invalidate: the application fills the row; a change deletes it,
-- always (a replayed old change deleting a fresher fill costs one cache
-- miss, never a wrong value), and stamps the marker with its version if
-- newer, for ttl seconds. The stamp is a write to a key the application
-- can WATCH while it reads PostgreSQL to fill the row: a change that
-- lands in between makes its EXEC fail instead of caching the old row.
local function invalidate(row, marker, v, ttl)
  local gone = redis.call('DEL', row)
  local cur = redis.call('GET', marker)
  if cur and not newer(v, cur) then return 0, gone end
  set_marker(marker, v, ttl)
  return 1, gone
end
if ARGV[1] == 't' then
  local v, tomb, kind, n = ARGV[2], ARGV[3], ARGV[4], 0
  for i = 1, #KEYS - 1, 2 do
    if kind == 'inval' then
      local _, gone = invalidate(KEYS[i], KEYS[i + 1], v, tomb)
      n = n + gone
    else
      local cur
      if kind == 'string' then
        cur = redis.call('GET', KEYS[i + 1])
      else
        local _
        _, cur = version_of(KEYS[i])
      end
      if cur and newer(v, cur) then
        redis.call('DEL', KEYS[i])
        set_marker(KEYS[i + 1], v, tomb)
        n = n + 1
      end
    end
  end
  return n
end
local function apply(row, marker, op, v, ttl, kind, tomb, tf, nt, pf, np)
  if kind == 'inval' then return (invalidate(row, marker, v, ttl)) end
  if kind == 'string' then return apply_string(row, marker, op, v, ttl, tomb, tf, nt, pf) end
  return apply_row(row, marker, op, v, ttl, kind, tomb, tf, nt, pf, np)
end
local tomb = ARGV[2]
local out, i, k, last = {}, 3, 1, #ARGV
while i <= last do
  local nt = tonumber(ARGV[i + 4])
  local tf = i + 5
  local np = tonumber(ARGV[tf + nt])
  local ok, res = pcall(apply, KEYS[k], KEYS[k + 1], ARGV[i], ARGV[i + 1], ARGV[i + 2],
                        ARGV[i + 3], tomb, tf, nt, tf + nt + 1, np)
  if ok then out[#out + 1] = res
  elseif type(res) == 'table' and res.err then out[#out + 1] = res
  else out[#out + 1] = {err = 'ERR ' .. tostring(res)} end
  i = tf + nt + 1 + np
  k = k + 2
end
return out
