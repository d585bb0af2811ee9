"""The Lua scripts of ``RedisStreamsBus``: each runs atomically on the server.

Ownership checks (``XPENDING`` for one id names its consumer) and the action they guard run in
one script, so a worker whose entry was reclaimed can neither renew nor acknowledge it: that is
the fence. Keys arrive as ``KEYS`` (all under one ``{app}`` hash tag, so one cluster slot).
"""

from __future__ import annotations

__all__ = ["SCRIPTS"]

_SUBMIT = """
-- KEYS: trace hash, work stream. ARGV: trace id, body, to (JSON or '').
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'status', 'queued')
redis.call('XADD', KEYS[2], '*', 'trace', ARGV[1], 'body', ARGV[2], 'to', ARGV[3])
return 1
"""

_CLAIM = """
-- KEYS: work stream. ARGV: group, consumer, min idle ms, count, start cursor.
-- Returns {next cursor, {{id, fields, deliveries}, ...}}; entries deleted meanwhile are acked.
local res = redis.call('XAUTOCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[5],
  'COUNT', ARGV[4])
local out = {}
for _, e in ipairs(res[2]) do
  local id = e[1]
  if type(e[2]) == 'table' then
    local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
    local n = 1
    if p[1] then n = p[1][4] end
    table.insert(out, {id, e[2], n})
  else
    redis.call('XACK', KEYS[1], ARGV[1], id)
  end
end
return {res[1], out}
"""

_RENEW = """
-- KEYS: work stream. ARGV: group, consumer, ids... Returns the ids the consumer no longer owns.
local lost = {}
for i = 3, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'JUSTID')
  else
    table.insert(lost, id)
  end
end
return lost
"""

_SETTLE = """
-- KEYS: work stream, dead-letter stream. ARGV: group, consumer, id, reason ('' = none),
-- trace id, body. 1 when settled, 0 when the consumer no longer owns the entry.
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if not p[1] or p[1][2] ~= ARGV[2] then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('XADD', KEYS[2], '*', 'trace', ARGV[5], 'reason', ARGV[4], 'body', ARGV[6],
    'deliveries', tostring(p[1][4]))
end
return 1
"""

_RELEASE = """
-- KEYS: work stream. ARGV: group, consumer, idle ms, ids... Owned entries look idle that long.
for i = 4, #ARGV do
  local id = ARGV[i]
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], id, id, 1)
  if p[1] and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, id, 'IDLE', ARGV[3], 'JUSTID')
  end
end
return 1
"""

_PUT_OUTPUT = """
-- KEYS: output stream, output-id set, trace hash, cancel key. ARGV: output id, kind, body, ttl s.
-- 0 when that output id is there already. The end marker starts the expiry of the trace's keys.
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'kind', ARGV[2], 'body', ARGV[3])
if ARGV[2] == 'end' then
  redis.call('HSET', KEYS[3], 'status', 'ended')
  for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[4]) end
end
return 1
"""

_CANCEL = """
-- KEYS: trace hash, cancel key. ARGV: channel, trace id. -1 unknown trace, 0 ended or asked
-- before, 1 first request (published on the channel).
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return -1 end
if status == 'ended' then return 0 end
if not redis.call('SET', KEYS[2], '1', 'NX') then return 0 end
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""

SCRIPTS: dict[str, str] = {
    "submit": _SUBMIT,
    "claim": _CLAIM,
    "renew": _RENEW,
    "settle": _SETTLE,
    "release": _RELEASE,
    "put_output": _PUT_OUTPUT,
    "cancel": _CANCEL,
}
"""Script name -> Lua source."""
