-- The live counters' script (pipeline/adapters/azure/redis_counters.py): dedupe, increment and
-- budget check of one chunk of events, atomically. The @NAME@ placeholders are filled in by the
-- adapter (measure names, the width of an event) before the script is loaded.
--
-- KEYS: the chunk's marks (1..n), then every other key it may write, each once. ARGV[1]: msgpack of
-- [now, mark_ttl, hourly_ttl, monthly_ttl, n, hourly, subs, ccs, budgets, events], where
--   hourly  = {{hash key, deployment, index key, hour}, ...}   (key: an index into KEYS)
--   subs    = {{hash key, index key, subscription}, ...}, ccs = {{hash key, index key, cost center}, ...}
--   budgets = {{kind 's'|'c', target, alerts key, scope, key, month, budget micros (text), currency,
--               {{threshold (text), spend that reaches it}, ...}}, ...}
--   events  = flat, EVENT_WIDTH numbers per event: h, s, c (target numbers), prompt, cached,
--             completion, reasoning, total tokens, micros, unpriced
local p = cmsgpack.unpack(ARGV[1])
local now, mark_ttl, hourly_ttl, monthly_ttl, n = p[1], p[2], p[3], p[4], p[5]
local hourly, subs, ccs, budgets, ev = p[6], p[7], p[8], p[9], p[10]
local HOURLY, MONTHLY, COST_CENTER = {@HOURLY@}, {@MONTHLY@}, {@COST_CENTER@}
local new, a = 0, 0
for i = 1, n do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', mark_ttl) then
    new = new + 1
    local h, s, c = hourly[ev[a + 1]], subs[ev[a + 2]], ccs[ev[a + 3]]
    local pt, ct, comp, rt, tt, micros = ev[a + 4], ev[a + 5], ev[a + 6], ev[a + 7], ev[a + 8], ev[a + 9]
    local x = h.sums
    if x then
      x[1], x[2], x[3], x[4], x[5], x[6] = x[1] + 1, x[2] + pt, x[3] + ct, x[4] + comp, x[5] + rt, x[6] + tt
    else
      h.sums = {1, pt, ct, comp, rt, tt}
    end
    x = s.sums
    if x then
      x[1], x[2], x[3], x[4], x[5], x[6] = x[1] + 1, x[2] + pt, x[3] + ct, x[4] + comp, x[5] + rt, x[6] + tt
      x[7], x[8] = x[7] + micros, x[8] + ev[a + 10]
    else
      s.sums = {1, pt, ct, comp, rt, tt, micros, ev[a + 10]}
    end
    x = c.sums
    if x then x[1], x[2] = x[1] + 1, x[2] + micros else c.sums = {1, micros} end
  end
  a = a + @WIDTH@
end
local function int(x) return string.format('%.0f', x) end
local clock = tonumber(redis.call('TIME')[1])  -- the server's clock, the one TTLs run on
local done, indexes, trim = {}, {}, {}
for _, h in ipairs(hourly) do
  if h.sums then
    local key, field = h[1], '|' .. h[2]
    for j, name in ipairs(HOURLY) do
      if h.sums[j] ~= 0 then redis.call('HINCRBY', KEYS[key], name .. field, int(h.sums[j])) end
    end
    if not done[key] then  -- one hash per hour and subscription, shared by its deployments
      done[key] = true
      redis.call('EXPIRE', KEYS[key], hourly_ttl)
      local index = h[3]
      if redis.call('ZADD', KEYS[index], clock, h[4]) == 1 then trim[index] = true end  -- score: last write
      if not done[index] then done[index] = true indexes[#indexes + 1] = index end
    end
  end
end
for _, index in ipairs(indexes) do
  if trim[index] then redis.call('ZREMRANGEBYSCORE', KEYS[index], '-inf', '(' .. int(clock - hourly_ttl)) end
  redis.call('EXPIRE', KEYS[index], hourly_ttl)
end
local function monthly(list, names)
  local members, order = {}, {}
  for _, t in ipairs(list) do
    if t.sums then
      local key = KEYS[t[1]]
      for j, name in ipairs(names) do
        if name == 'spend_micros' then
          t.spend = redis.call('HINCRBY', key, name, int(t.sums[j]))
        elseif t.sums[j] ~= 0 then
          redis.call('HINCRBY', key, name, int(t.sums[j]))
        end
      end
      redis.call('EXPIRE', key, monthly_ttl)
      local index = t[2]
      if not members[index] then members[index] = {} order[#order + 1] = index end
      members[index][#members[index] + 1] = t[3]
    end
  end
  for _, index in ipairs(order) do  -- at most CHUNK members: within unpack's limit
    redis.call('SADD', KEYS[index], unpack(members[index]))
    redis.call('EXPIRE', KEYS[index], monthly_ttl)
  end
end
monthly(subs, MONTHLY)
monthly(ccs, COST_CENTER)
local alerts = {}
for _, b in ipairs(budgets) do
  local t = (b[1] == 's' and subs or ccs)[b[2]]
  if t.sums then
    local alerts_key, scope, key, month, micros, currency = KEYS[b[3]], b[4], b[5], b[6], b[7], b[8]
    for _, limit in ipairs(b[9]) do
      if t.spend >= limit[2] then
        local record = cjson.encode({scope, key, month, limit[1], int(t.spend), micros, currency, now})
        if redis.call('HSETNX', alerts_key, scope .. '|' .. limit[1] .. '|' .. key, record) == 1 then
          redis.call('EXPIRE', alerts_key, monthly_ttl)
          alerts[#alerts + 1] = record
        end
      end
    end
  end
end
return {new, alerts}
