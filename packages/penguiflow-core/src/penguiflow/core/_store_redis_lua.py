"""The Lua scripts of ``RedisDurableStore``: each store operation runs as one script (atomic).

Keys of a store with prefix ``P``: a record is hash ``P:r:{ns}|{key}``; a namespace's keys are
sorted set ``P:k:{ns}`` (byte-ordered scans); a log is stream ``P:l:{name}`` with metadata hash
``P:lm:{name}`` and idempotency keys ``P:li:{name}``; ``P:t:{tenant}`` is a tenant's scope index
and sorted set ``P:x`` holds expiry times.
"""

__all__ = ["SCRIPTS"]

_LIB = """
local P = ARGV[1]
local function rec_key(ns, key) return P .. ':r:' .. ns .. '|' .. key end
local function keys_of(ns) return P .. ':k:' .. ns end
local function owned(tenant) return P .. ':t:' .. tenant end
local EXPIRY = P .. ':x'
local function live(exp, now) return exp == '' or tonumber(exp) > tonumber(now) end
local function selects(ft, fu, fs, t, u, s)
  return ft == t and (fu == '' or fu == u) and (fs == '' or fs == s)
end
local RF = {'value', 'tenant', 'user', 'session', 'version', 'exp', 'updated'}
local function drop_record(ns, key, tenant)
  redis.call('DEL', rec_key(ns, key))
  redis.call('ZREM', keys_of(ns), key)
  redis.call('ZREM', EXPIRY, 'r' .. ns .. '|' .. key)
  if tenant then redis.call('SREM', owned(tenant), 'r' .. ns .. '|' .. key) end
end
local function log_keys(name)
  return P .. ':lm:' .. name, P .. ':l:' .. name, P .. ':li:' .. name
end
local function drop_stream(name, tenant)
  local meta, log, idem = log_keys(name)
  redis.call('DEL', meta, log, idem)
  redis.call('ZREM', EXPIRY, 'l' .. name)
  if tenant then redis.call('SREM', owned(tenant), 'l' .. name) end
end
"""

# ARGV: P ns key value tenant user session if_version now exp native_ms
_PUT = (
    _LIB
    + """
local ns, key = ARGV[2], ARGV[3]
local tenant, user, session = ARGV[5], ARGV[6], ARGV[7]
local now, exp = ARGV[9], ARGV[10]
local rk = rec_key(ns, key)
local old = redis.call('HMGET', rk, 'tenant', 'user', 'session', 'version', 'exp')
local actual = 0
if old[1] then
  if live(old[5], now) then
    if old[1] ~= tenant then return {'scope', old[1], old[2], old[3]} end
    actual = tonumber(old[4])
  elseif old[1] ~= tenant then
    redis.call('SREM', owned(old[1]), 'r' .. ns .. '|' .. key)
  end
end
if ARGV[8] ~= '' and tonumber(ARGV[8]) ~= actual then return {'version', tostring(actual)} end
redis.call('HSET', rk, 'value', ARGV[4], 'tenant', tenant, 'user', user, 'session', session,
  'version', actual + 1, 'exp', exp, 'updated', now)
redis.call('ZADD', keys_of(ns), 0, key)
redis.call('SADD', owned(tenant), 'r' .. ns .. '|' .. key)
if exp == '' then
  redis.call('ZREM', EXPIRY, 'r' .. ns .. '|' .. key)
  redis.call('PERSIST', rk)
else
  redis.call('ZADD', EXPIRY, exp, 'r' .. ns .. '|' .. key)
  redis.call('PEXPIRE', rk, ARGV[11])
end
return {'ok', tostring(actual + 1)}
"""
)

# ARGV: P ns key now ftenant fuser fsession (ftenant '' = no filter)
_TAKE = (
    _LIB
    + """
local ns, key, now = ARGV[2], ARGV[3], ARGV[4]
local r = redis.call('HMGET', rec_key(ns, key), unpack(RF))
if not r[2] or not live(r[6], now) then return false end
if ARGV[5] ~= '' and not selects(ARGV[5], ARGV[6], ARGV[7], r[2], r[3], r[4]) then return false end
drop_record(ns, key, r[2])
return r
"""
)

# ARGV: P ns low high limit now ftenant fuser fsession
_SCAN = (
    _LIB
    + """
local ns, now, limit = ARGV[2], ARGV[6], tonumber(ARGV[5])
local zk = keys_of(ns)
local found, offset, batch = {}, 0, math.max(limit, 64)
while #found < limit do
  local keys = redis.call('ZRANGE', zk, ARGV[3], ARGV[4], 'BYLEX', 'LIMIT', offset, batch)
  for _, key in ipairs(keys) do
    local r = redis.call('HMGET', rec_key(ns, key), unpack(RF))
    if r[2] and live(r[6], now)
        and (ARGV[7] == '' or selects(ARGV[7], ARGV[8], ARGV[9], r[2], r[3], r[4])) then
      found[#found + 1] = {key, r[1], r[2], r[3], r[4], r[5], r[6], r[7]}
      if #found == limit then break end
    end
  end
  if #keys < batch then break end
  offset = offset + batch
end
return found
"""
)

# ARGV: P stream value tenant user session idem now exp_if_ttl first_exp margin_ms
# -> the seq (an integer reply: the cheapest to parse) | {'scope', tenant, user, session}
# The hot path of a journal, so it does without _LIB (whose closures every call would build) and
# without commands that change nothing: an append to a live stream of its tenant is HMGET, (HGET
# of the key,) XADD, (HSET of the key,) HSET of the last seq -- and, with an expiry, ZADD and
# PEXPIREs only when the expiry moved or the stream is new.
_APPEND = """
local P, name, tenant, idem, now = ARGV[1], ARGV[2], ARGV[4], ARGV[7], ARGV[8]
local meta, log, ik = P .. ':lm:' .. name, P .. ':l:' .. name, P .. ':li:' .. name
local m = redis.call('HMGET', meta, 'tenant', 'user', 'session', 'last', 'exp')
local old = m[5]
if m[1] and old ~= '' and tonumber(old) <= tonumber(now) then
  -- expired: this append starts the stream anew
  redis.call('DEL', meta)
  redis.call('ZREM', P .. ':x', 'l' .. name)
  redis.call('SREM', P .. ':t:' .. m[1], 'l' .. name)
  m[1] = false
end
local created, exp, last = not m[1], old, 0
if created then
  redis.call('DEL', log, ik)  -- what the expired (or natively expired) stream left
  exp = ARGV[10]
  redis.call('SADD', P .. ':t:' .. tenant, 'l' .. name)
elseif m[1] ~= tenant then
  return {'scope', m[1], m[2], m[3]}
else
  if idem ~= '' then
    local seen = redis.call('HGET', ik, idem)
    if seen then return tonumber(seen) end
  end
  last = tonumber(m[4])
end
if ARGV[9] ~= '' then exp = ARGV[9] end
local seq = last + 1
if idem ~= '' then
  redis.call('XADD', log, seq .. '-0', 'v', ARGV[3], 't', now, 'k', idem)
  redis.call('HSET', ik, idem, seq)
else
  redis.call('XADD', log, seq .. '-0', 'v', ARGV[3], 't', now)
end
if created then
  redis.call('HSET', meta, 'tenant', tenant, 'user', ARGV[5], 'session', ARGV[6], 'last', seq,
    'exp', exp)
elseif exp == old then
  redis.call('HSET', meta, 'last', seq)
else
  redis.call('HSET', meta, 'last', seq, 'exp', exp)
end
if exp ~= '' then
  local ms = math.ceil((tonumber(exp) - tonumber(now)) * 1000) + tonumber(ARGV[11])
  if created or exp ~= old then
    redis.call('ZADD', P .. ':x', exp, 'l' .. name)
    redis.call('PEXPIRE', meta, ms)
    redis.call('PEXPIRE', log, ms)
    redis.call('PEXPIRE', ik, ms)
  elseif idem ~= '' then
    redis.call('PEXPIRE', ik, ms)  -- the key hash may be new (the stream's first keyed entry)
  end
end
return seq
"""

# ARGV: P stream after limit now -> false | {tenant, user, session, entries}
_READ = (
    _LIB
    + """
local meta, log = log_keys(ARGV[2])
local m = redis.call('HMGET', meta, 'tenant', 'user', 'session', 'exp')
if not m[1] or not live(m[4], ARGV[5]) then return false end
local entries = redis.call('XRANGE', log, (tonumber(ARGV[3]) + 1) .. '-0', '+', 'COUNT', ARGV[4])
return {m[1], m[2], m[3], entries}
"""
)

# ARGV: P stream before now
_TRIM = (
    _LIB
    + """
local meta, log = log_keys(ARGV[2])
local m = redis.call('HMGET', meta, 'tenant', 'exp')
if not m[1] or not live(m[2], ARGV[4]) then return 0 end
return redis.call('XTRIM', log, 'MINID', ARGV[3] .. '-0')
"""
)

# ARGV: P tenant user session now
_ERASE = (
    _LIB
    + """
local tenant, now = ARGV[2], ARGV[5]
local set = owned(tenant)
local count = 0
for _, member in ipairs(redis.call('SMEMBERS', set)) do
  local kind, rest = string.sub(member, 1, 1), string.sub(member, 2)
  local f
  if kind == 'r' then
    local bar = string.find(rest, '|', 1, true)
    local ns, key = string.sub(rest, 1, bar - 1), string.sub(rest, bar + 1)
    f = redis.call('HMGET', rec_key(ns, key), 'tenant', 'user', 'session', 'exp')
    if not f[1] or f[1] ~= tenant then
      redis.call('SREM', set, member)
    elseif selects(tenant, ARGV[3], ARGV[4], f[1], f[2], f[3]) then
      if live(f[4], now) then count = count + 1 end
      drop_record(ns, key, tenant)
    end
  else
    f = redis.call('HMGET', P .. ':lm:' .. rest, 'tenant', 'user', 'session', 'exp')
    if not f[1] or f[1] ~= tenant then
      redis.call('SREM', set, member)
    elseif selects(tenant, ARGV[3], ARGV[4], f[1], f[2], f[3]) then
      if live(f[4], now) then count = count + 1 end
      drop_stream(rest, tenant)
    end
  end
end
return count
"""
)

# ARGV: P now batch -> {removed, looked_at}
_PURGE = (
    _LIB
    + """
local now = ARGV[2]
local due = redis.call('ZRANGE', EXPIRY, '-inf', now, 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
local count = 0
for _, member in ipairs(due) do
  local kind, rest = string.sub(member, 1, 1), string.sub(member, 2)
  if kind == 'r' then
    local bar = string.find(rest, '|', 1, true)
    local ns, key = string.sub(rest, 1, bar - 1), string.sub(rest, bar + 1)
    local f = redis.call('HMGET', rec_key(ns, key), 'tenant', 'exp')
    if not f[1] then
      drop_record(ns, key, nil)
    elseif not live(f[2], now) then
      drop_record(ns, key, f[1])
      count = count + 1
    elseif f[2] == '' then
      redis.call('ZREM', EXPIRY, member)
    else
      redis.call('ZADD', EXPIRY, f[2], member)
    end
  else
    local f = redis.call('HMGET', P .. ':lm:' .. rest, 'tenant', 'exp')
    if not f[1] then
      drop_stream(rest, nil)
    elseif not live(f[2], now) then
      drop_stream(rest, f[1])
      count = count + 1
    elseif f[2] == '' then
      redis.call('ZREM', EXPIRY, member)
    else
      redis.call('ZADD', EXPIRY, f[2], member)
    end
  end
end
return {count, #due}
"""
)


SCRIPTS = {
    "put": _PUT,
    "take": _TAKE,
    "scan": _SCAN,
    "append": _APPEND,
    "read": _READ,
    "trim": _TRIM,
    "erase": _ERASE,
    "purge": _PURGE,
}
"""Script source by operation name."""
