-- memoryd's session window scripts. One file, three functions, selected by
-- ARGV[1]. KEYS[1] is the message list, KEYS[2] the meta hash (same slot).
--
-- The meta hash's last_seq is the seq of the list's newest message. An append
-- is pushed only when it continues that sequence; anything else drops the
-- window, and the next read rebuilds it from Postgres.

local op = ARGV[1]

if op == 'append' then
  -- ARGV: op, first_seq, last_seq, ttl_ms, window, entries...
  local first_seq = tonumber(ARGV[2])
  local cached = redis.call('HGET', KEYS[2], 'last_seq')
  if cached == false then
    if first_seq ~= 1 then
      return 0  -- not cached: the next read rebuilds from Postgres
    end
  elseif tonumber(cached) ~= first_seq - 1 then
    redis.call('DEL', KEYS[1], KEYS[2])
    return -1
  end
  for i = 6, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[5]), -1)
  redis.call('HSET', KEYS[2], 'last_seq', ARGV[3], 'ttl_ms', ARGV[4])
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
  redis.call('PEXPIRE', KEYS[2], ARGV[4])
  return 1

elseif op == 'tail' then
  -- ARGV: op, count. Returns {last_seq, newest `count` entries} and slides
  -- the TTL, or nil when the window is not cached.
  local meta = redis.call('HMGET', KEYS[2], 'last_seq', 'ttl_ms')
  if meta[1] == false then
    return nil
  end
  local entries = redis.call('LRANGE', KEYS[1], -tonumber(ARGV[2]), -1)
  if #entries == 0 then
    return nil  -- the list was evicted without its meta hash
  end
  redis.call('PEXPIRE', KEYS[1], meta[2])
  redis.call('PEXPIRE', KEYS[2], meta[2])
  return {meta[1], entries}

elseif op == 'load' then
  -- ARGV: op, last_seq, ttl_ms, entries... Replaces the window.
  redis.call('DEL', KEYS[1], KEYS[2])
  for i = 4, #ARGV, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
  redis.call('HSET', KEYS[2], 'last_seq', ARGV[2], 'ttl_ms', ARGV[3])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
  return 1
end

return redis.error_reply('unknown op ' .. tostring(op))
