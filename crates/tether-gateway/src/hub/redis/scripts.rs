//! The Lua scripts the Redis backplane runs. Each runs atomically in Redis, so the epoch,
//! the offset counter, the stream entry, the trimming and the notification of one publish
//! happen as one step: every node sees the same offsets in the same order. Key layout and
//! reply formats: [`super::wire`].
//!
//! Trimming is exact (XDEL of the oldest entries past `count`, then of those older than
//! `age` by Redis's own clock) rather than `XADD MAXLEN ~`: the script must know the highest
//! offset it drops (`evicted`), since that decides whether a resume is `recovered`. A
//! latest-per-key topic also deletes the previous record of the same key; that one does not
//! count as evicted (a resume does not need it).

use std::sync::LazyLock;

use ::redis::Script;

/// Helpers both scripts share.
const COMMON: &str = r#"
local function offset_of(id) return tonumber(string.match(id, '^(%d+)')) end
local function field(entry, name)
  local f = entry[2]
  for i = 1, #f, 2 do if f[i] == name then return f[i + 1] end end
  return nil
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- Drops entries past `count` (when count >= 0) and older than `age_ms`; records the
-- highest offset dropped in meta.evicted.
local function trim(meta, log, keys, count, age_ms, lpk, now)
  local evicted = nil
  local function drop(e)
    redis.call('XDEL', log, e[1])
    local off = offset_of(e[1])
    evicted = off
    if lpk then
      local k = field(e, 'key')
      if k and redis.call('HGET', keys, k) == string.format('%d', off) then
        redis.call('HDEL', keys, k)
      end
    end
  end
  if count >= 0 then
    local excess = redis.call('XLEN', log) - count
    if excess > 0 then
      for _, e in ipairs(redis.call('XRANGE', log, '-', '+', 'COUNT', excess)) do drop(e) end
    end
  end
  local cutoff = now - age_ms
  local done = false
  while not done do
    local head = redis.call('XRANGE', log, '-', '+', 'COUNT', 32)
    if #head == 0 then break end
    for _, e in ipairs(head) do
      if tonumber(field(e, 'at')) >= cutoff then done = true; break end
      drop(e)
    end
  end
  if evicted then redis.call('HSET', meta, 'evicted', string.format('%d', evicted)) end
end
"#;

/// KEYS: meta, log, keys, topics set. ARGV: fresh epoch, topic, count, age_ms,
/// latest_per_key (0/1), has_key (0/1), key, ts, data, channel. Replies
/// `[epoch, offset, retained]`; with an empty channel it does not notify and replies
/// `[epoch, offset, retained, notification]` for the caller to `PUBLISH` once replicas
/// have the record (`hub.redis_wait_replicas`).
const PUBLISH: &str = r#"
local meta, log, keys = KEYS[1], KEYS[2], KEYS[3]
redis.call('HSETNX', meta, 'epoch', ARGV[1])
local epoch = redis.call('HGET', meta, 'epoch')
local offset = redis.call('HINCRBY', meta, 'last', 1)
local lpk = ARGV[5] == '1'
local has_key = ARGV[6] == '1'
local now = now_ms()
local id = string.format('%d-0', offset)
if has_key then
  redis.call('XADD', log, id, 'at', now, 'ts', ARGV[8], 'data', ARGV[9], 'key', ARGV[7])
else
  redis.call('XADD', log, id, 'at', now, 'ts', ARGV[8], 'data', ARGV[9])
end
if lpk and has_key then
  local previous = redis.call('HGET', keys, ARGV[7])
  if previous then redis.call('XDEL', log, previous .. '-0') end
  redis.call('HSET', keys, ARGV[7], string.format('%d', offset))
end
trim(meta, log, keys, tonumber(ARGV[3]), tonumber(ARGV[4]), lpk, now)
redis.call('SADD', KEYS[4], ARGV[2])
local key, key_len = '', -1
if has_key then key, key_len = ARGV[7], #ARGV[7] end
local note = epoch .. ' ' .. string.format('%d', offset) .. ' ' .. ARGV[8]
  .. ' ' .. #ARGV[2] .. ' ' .. key_len .. '\n' .. ARGV[2] .. key .. ARGV[9]
if ARGV[10] == '' then return {epoch, offset, redis.call('XLEN', log), note} end
redis.call('PUBLISH', ARGV[10], note)
return {epoch, offset, redis.call('XLEN', log)}
"#;

/// KEYS: meta, log, keys. ARGV: fresh epoch, client epoch ('' for none), after (-1 for no
/// records), age_ms, latest_per_key (0/1), last offset wanted ('+' for all). Creates the
/// topic's epoch if it has none yet, so a subscriber can resume into a topic before its
/// first message. Replies `[epoch, last, evicted, retained, (offset, ts, key|nil, data)*]`.
const READ: &str = r#"
local meta, log, keys = KEYS[1], KEYS[2], KEYS[3]
redis.call('HSETNX', meta, 'epoch', ARGV[1])
local epoch = redis.call('HGET', meta, 'epoch')
local last = tonumber(redis.call('HGET', meta, 'last') or '0')
trim(meta, log, keys, -1, tonumber(ARGV[4]), ARGV[5] == '1', now_ms())
local evicted = tonumber(redis.call('HGET', meta, 'evicted') or '0')
local out = {epoch, last, evicted, redis.call('XLEN', log)}
local after = tonumber(ARGV[3])
if after >= 0 then
  if ARGV[2] ~= '' and (ARGV[2] ~= epoch or after > last) then after = 0 end
  local to = ARGV[6]
  if to ~= '+' then to = to .. '-0' end
  for _, e in ipairs(redis.call('XRANGE', log, string.format('%d-0', after + 1), to)) do
    table.insert(out, offset_of(e[1]))
    table.insert(out, field(e, 'ts'))
    table.insert(out, field(e, 'key') or false)
    table.insert(out, field(e, 'data'))
  end
end
return out
"#;

/// KEYS: presence set. ARGV: ttl_ms, member*. Adds (or refreshes) each member with the
/// score "now + ttl" by Redis's clock, after dropping the expired ones, and lets the whole
/// set expire when no node refreshes it for a ttl. Replies the number of members given.
const PRESENCE_REFRESH: &str = r#"
local now = now_ms()
local ttl = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], now + ttl, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], ttl)
return #ARGV - 1
"#;

/// KEYS: presence set. ARGV: limit. Drops the expired members, then replies
/// `[count, member*]` with at most `limit` members.
const PRESENCE_READ: &str = r#"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms())
local out = {redis.call('ZCARD', KEYS[1])}
for _, m in ipairs(redis.call('ZRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)) do
  table.insert(out, m)
end
return out
"#;

/// The publish script.
pub(crate) static PUBLISH_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{COMMON}{PUBLISH}")));

/// The read script (replay and catch-up).
pub(crate) static READ_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{COMMON}{READ}")));

/// The presence refresh script (join, refresh, re-add after an outage).
pub(crate) static PRESENCE_REFRESH_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{COMMON}{PRESENCE_REFRESH}")));

/// The presence query script.
pub(crate) static PRESENCE_READ_SCRIPT: LazyLock<Script> =
    LazyLock::new(|| Script::new(&format!("{COMMON}{PRESENCE_READ}")));
