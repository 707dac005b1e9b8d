"""The one Lua script behind every Redis limiter decision (single limiters and groups alike).

Each call names its members (one limiter, or every limiter of a group) and an operation; the
script reads every member's state, decides for all of them at once and writes, atomically.

KEYS: two per member: ``KEYS[2i-1]`` its state (token bucket: a hash ``{tokens, ts}``, plus the
provider's budget fields ``{left, top, until, hold, gen}`` while they matter, so a decision reads
one hash; sliding window: a sorted set of calls), ``KEYS[2i]`` a window's provider budget (a
hash of the same fields, written by ``observe``; unused by a token bucket).  ARGV[1] is the operation, ARGV[2] the member count,
then per member: kind (``tb`` or ``sw``), two parameters (rate and capacity, or max_calls and
the window in microseconds), and ``a`` (``look``, ``take``) or ``a, b, c, d`` (the others):

* ``look``:    a = cost. May every member grant its cost now?  Changes nothing.
* ``take``:    a = cost. Take every member's cost, or none of them.
* ``lease``:   a = cost, b = batch, c = calls or tokens to give back first, d = their receipt.
  One member: give back what an earlier lease left, then take the cost and up to ``batch`` in
  all if there is that much.
* ``adjust``:  a = delta, d = the reservation's receipt.  ``delta > 0`` takes more (a token
  bucket may go negative: a debt later callers wait off); ``delta < 0`` gives back (a token
  bucket never above its capacity, a window drops calls logged at the receipt's stamp that
  are still in it; the provider budget gets it back if it is still the one it came from).
* ``observe``: a = remaining ('' when not reported), b = seconds until the provider resets it,
  c = seconds to hold every caller ('' for none).

Reply: ``{granted 0|1, wait seconds, then per member: state, receipt, amount}`` where state is
the tokens left / calls in the window, receipt ``"<stamp>/<gen>"`` (the server time in
microseconds a window's calls were logged at, 0 for a bucket, and the generation of the provider
budget they were taken from), and amount what a lease took.  Numbers that may be fractional are
returned as strings (Redis would truncate a Lua number).

The short form, for one limiter's ``look`` or ``take`` (every ``try_acquire``, ``acquire``,
``wait_time`` and ``reserve``): ARGV is one string ``"<code> <p1> <p2> <cost>"`` (code ``T``
/ ``t``: a token bucket's take / look, ``W`` / ``w``: a window's), KEYS just the bucket's hash,
or the window's set and budget; the reply is one string ``"<granted> <wait> <state>
<receipt>"``.  It decides exactly as the long form: a client sends one argument and reads one
bulk string faster than four arguments and an array (redis-py's pure-Python parser).

The provider budget: while ``now < until`` the member grants at most ``left`` more in total
(``top`` is the remaining reported, which a give-back never exceeds); while ``now < hold`` it
grants nothing.  A report whose reset falls within the active budget's (1 ms of slack) is of the
same window, possibly older than one seen already: it only lowers ``left``; a report that
resets later replaces the budget, whose ``gen`` is the server time it was observed at.  Token bucket and window rules are the in-memory ones
(API section 2).  Window members are ``"<time>:~<i>"``, ``i`` zero-padded to 16 digits and one
more than the newest member logged at the same time, so members never collide (even after a
give-back removed some) and the newest one sorts last among equal times (``~`` sorts after
every digit, so also after members named ``"<time>:<i>"`` by earlier versions).
"""

from __future__ import annotations

import hashlib

__all__ = ["LUA", "SHA"]

LUA = r"""
local t = redis.call('TIME')
local real = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.17g', x) end

-- One limiter's look or take comes in the short form (see the module's docstring).
local short = #ARGV == 1
local op, n, kind, p1, p2, a1
if short then
  local code
  code, p1, p2, a1 = string.match(ARGV[1], '^(%a) (%S+) (%S+) (%S+)$')
  if code == 'T' or code == 'W' then op = 'take' else op = 'look' end
  if code == 'T' or code == 't' then kind = 'tb' else kind = 'sw' end
  n = 1
else
  op, n, kind, p1, p2, a1 = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5], ARGV[6]
end

local width = 7
if op == 'look' or op == 'take' then width = 4 end

-- The hot paths: one token bucket or one window, look or take, no provider budget or hold in
-- force. The rules of load/check/debit/save_tb below, without their tables and closures (a
-- third of the time).
if n == 1 and width == 4 and kind == 'tb' then
  local rate, cap, cost = tonumber(p1), tonumber(p2), tonumber(a1)
  local st = redis.call('HMGET', KEYS[1], 'tokens', 'ts', 'until', 'hold', 'gen')
  if (tonumber(st[3]) or 0) <= real and (tonumber(st[4]) or 0) <= real then
    local receipt = '0/' .. (st[5] or '0')
    local tokens, last = cap, real
    if st[1] then
      tokens = tonumber(st[1])
      last = tonumber(st[2])
      if real > last then
        tokens = math.min(cap, tokens + rate * (real - last) / 1000000)
        last = real
      end
    end
    -- (strings where a number would be formatted again: a float's formatting is most of the
    -- script's own work)
    local granted, wait, left = '1', '0', nil
    if tokens < cost then
      granted, wait = '0', fmt((cost - tokens) / rate)
    elseif op == 'take' and cost > 0 then
      tokens = tokens - cost
      left = fmt(tokens)
      local ttl = math.min(math.ceil((cap - tokens) / rate * 1000 + (last - real) / 1000), 2^52)
      if ttl > 0 then
        redis.call('HSET', KEYS[1], 'tokens', left, 'ts', fmt(last))
        redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
      else
        redis.call('DEL', KEYS[1])
      end
    end
    left = left or fmt(tokens)
    if short then return granted .. ' ' .. wait .. ' ' .. left .. ' ' .. receipt end
    return {tonumber(granted), wait, left, receipt, '0'}
  end
end

-- The same for one sliding window (the budget lives in KEYS[2]).
if n == 1 and width == 4 and kind == 'sw' then
  local b = {}  -- the budget's hash exists only while a budget or hold is in force
  if redis.call('EXISTS', KEYS[2]) == 1 then b = redis.call('HMGET', KEYS[2], 'until', 'hold', 'gen') end
  if (tonumber(b[1]) or 0) <= real and (tonumber(b[2]) or 0) <= real then
    local max_calls, window, cost = tonumber(p1), tonumber(p2), tonumber(a1)
    local now, next = real, 0
    local newest = redis.call('ZRANGE', KEYS[1], '-1', '-1', 'WITHSCORES')
    if newest[2] then
      local score = tonumber(newest[2])
      if score > now then now = score end
      if score == now then
        next = tonumber(string.match(newest[1], ':~?(%d+)$') or '-1') + 1
      end
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', fmt(now - window))
    local count = redis.call('ZCARD', KEYS[1])
    local stamp = fmt(now)
    local receipt = stamp .. '/' .. (b[3] or '0')
    local granted, wait = '1', '0'
    if count + cost > max_calls then
      local rank = count + cost - max_calls - 1
      local oldest = redis.call('ZRANGE', KEYS[1], rank, rank, 'WITHSCORES')
      granted, wait = '0', fmt((tonumber(oldest[2]) + window - now) / 1000000)
    elseif op == 'take' and cost > 0 then
      local args = {}
      for j = next, next + cost - 1 do
        args[#args + 1] = stamp
        args[#args + 1] = stamp .. ':~' .. string.format('%016d', j)
        if #args >= 2000 then
          redis.call('ZADD', KEYS[1], unpack(args))
          args = {}
        end
      end
      if #args > 0 then redis.call('ZADD', KEYS[1], unpack(args)) end
      count = count + cost
      local ttl = math.min(math.ceil((now + window - real) / 1000), 2^52)
      redis.call('PEXPIRE', KEYS[1], string.format('%d', ttl))
    end
    if short then return granted .. ' ' .. wait .. ' ' .. count .. ' ' .. receipt end
    return {tonumber(granted), wait, count, receipt, '0'}
  end
end

-- Everything else reads its arguments from A: ARGV, or a short call's in the long form.
local A = ARGV
if short then A = {op, '1', kind, p1, p2, a1} end

-- the provider's budget and hold, from a hash's fields (absent or expired: none)
local function budget(s, left, ends, hold, top, gen)
  s.hold = tonumber(hold) or 0
  s.gen = gen or '0'
  local u = tonumber(ends)
  if u and u > real and left then
    s.left = tonumber(left)
    s.top = tonumber(top)
    s.until_ = u
  end
end

local function load(i)
  local a = 3 + (i - 1) * width
  local s = {kind = A[a], p1 = tonumber(A[a + 1]), p2 = tonumber(A[a + 2]),
             a = A[a + 3], b = A[a + 4], c = A[a + 5], d = A[a + 6],
             key = KEYS[2 * i - 1], pkey = KEYS[2 * i], now = real}
  if s.kind == 'tb' then
    s.tokens = s.p2
    s.last = real
    local st = redis.call('HMGET', s.key, 'tokens', 'ts', 'left', 'until', 'hold', 'top', 'gen')
    if st[1] then
      s.tokens = tonumber(st[1])
      s.last = tonumber(st[2])
      if real > s.last then
        s.tokens = math.min(s.p2, s.tokens + s.p1 * (real - s.last) / 1000000)
        s.last = real
      end
    end
    budget(s, st[3], st[4], st[5], st[6], st[7])
  else
    s.next = 0
    local newest = redis.call('ZRANGE', s.key, '-1', '-1', 'WITHSCORES')
    if newest[2] then
      local score = tonumber(newest[2])
      if score > s.now then s.now = score end
      if score == s.now then
        s.next = tonumber(string.match(newest[1], ':~?(%d+)$') or '-1') + 1
      end
    end
    redis.call('ZREMRANGEBYSCORE', s.key, '-inf', fmt(s.now - s.p2))
    s.count = redis.call('ZCARD', s.key)
    local b = redis.call('HMGET', s.pkey, 'left', 'until', 'hold', 'top', 'gen')
    budget(s, b[1], b[2], b[3], b[4], b[5])
  end
  return s
end

-- may `cost` pass now, and if not, the seconds until it could
local function check(s, cost)
  local fits, wait = true, 0
  if s.hold > real then
    fits = false
    wait = (s.hold - real) / 1000000
  end
  if s.left and s.left < cost then
    fits = false
    wait = math.max(wait, (s.until_ - real) / 1000000)
  end
  if s.kind == 'tb' then
    if s.tokens < cost then
      fits = false
      wait = math.max(wait, (cost - s.tokens) / s.p1)
    end
  elseif s.count + cost > s.p1 then
    fits = false
    local rank = s.count + cost - s.p1 - 1
    local oldest = redis.call('ZRANGE', s.key, rank, rank, 'WITHSCORES')
    wait = math.max(wait, (tonumber(oldest[2]) + s.p2 - s.now) / 1000000)
  end
  return fits, wait
end

-- milliseconds the provider's budget or hold still needs to be kept (0: none)
local function budget_ttl(s)
  local last = math.max(s.hold, s.until_ or 0)
  if last > real then return math.ceil((last - real) / 1000) end
  return 0
end

-- a token bucket's hash: its state, and the budget fields while they matter
local function save_tb(s)
  local ttl = math.ceil((s.p2 - s.tokens) / s.p1 * 1000 + (s.last - real) / 1000)
  local keep = budget_ttl(s)
  if keep > ttl then ttl = keep end
  ttl = math.min(ttl, 2^52)
  if ttl <= 0 then
    redis.call('DEL', s.key)
  elseif keep > 0 then
    redis.call('HSET', s.key, 'tokens', fmt(s.tokens), 'ts', fmt(s.last), 'left', fmt(s.left or 0),
               'until', fmt(s.until_ or 0), 'hold', fmt(s.hold), 'top', fmt(s.top or 0), 'gen', s.gen)
    redis.call('PEXPIRE', s.key, string.format('%d', ttl))
  else
    redis.call('HSET', s.key, 'tokens', fmt(s.tokens), 'ts', fmt(s.last))
    redis.call('PEXPIRE', s.key, string.format('%d', ttl))
  end
end

-- a window's budget hash
local function save_budget(s)
  local keep = budget_ttl(s)
  if keep > 0 then
    redis.call('HSET', s.pkey, 'left', fmt(s.left or 0), 'until', fmt(s.until_ or 0),
               'hold', fmt(s.hold), 'top', fmt(s.top or 0), 'gen', s.gen)
    redis.call('PEXPIRE', s.pkey, string.format('%d', math.min(keep, 2^52)))
  else
    redis.call('DEL', s.pkey)
  end
end

-- take `k` (>= 0); a token bucket may go negative
local function debit(s, k)
  if k <= 0 then return end
  if s.left then s.left = s.left - k end
  if s.kind == 'tb' then
    s.tokens = s.tokens - k
    save_tb(s)
    return
  end
  if s.left then save_budget(s) end
  local stamp = fmt(s.now)
  local args = {}
  for j = s.next, s.next + k - 1 do
    args[#args + 1] = stamp
    args[#args + 1] = stamp .. ':~' .. string.format('%016d', j)
    if #args >= 2000 then
      redis.call('ZADD', s.key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('ZADD', s.key, unpack(args)) end
  s.next = s.next + k
  s.count = s.count + k
  local ttl = math.min(math.ceil((s.now + s.p2 - real) / 1000), 2^52)
  redis.call('PEXPIRE', s.key, string.format('%d', ttl))
end

-- give back `k` (>= 0) taken under `receipt` ("<stamp>/<budget generation>"): a window drops
-- calls logged at that stamp still in it; the provider budget it was taken from gets it back
local function credit(s, k, receipt)
  if k <= 0 then return end
  local stamp, gen = string.match(receipt, '^([^/]*)/?(.*)$')
  if s.left and gen == s.gen then s.left = math.min(s.top, s.left + k) end
  if s.kind == 'tb' then
    s.tokens = math.min(s.p2, s.tokens + k)
    save_tb(s)
    return
  end
  if s.left then save_budget(s) end
  local logged = redis.call('ZRANGEBYSCORE', s.key, stamp, stamp)
  local drop = {}
  for j = #logged, math.max(1, #logged - k + 1), -1 do
    drop[#drop + 1] = logged[j]
    if #drop >= 1000 then
      redis.call('ZREM', s.key, unpack(drop))
      drop = {}
    end
  end
  if #drop > 0 then redis.call('ZREM', s.key, unpack(drop)) end
  s.count = redis.call('ZCARD', s.key)
end

local members = {}
for i = 1, n do members[i] = load(i) end
local amounts = {}
local granted, longest = 1, 0

if op == 'look' or op == 'take' then
  for i = 1, n do
    local fits, wait = check(members[i], tonumber(members[i].a))
    if not fits then
      granted = 0
      longest = math.max(longest, wait)
    end
  end
  if op == 'take' and granted == 1 then
    for i = 1, n do debit(members[i], tonumber(members[i].a)) end
  end
elseif op == 'lease' then
  local s = members[1]
  credit(s, tonumber(s.c), s.d)
  local cost, batch = tonumber(s.a), tonumber(s.b)
  local fits, wait = check(s, cost)
  if fits then
    local room
    if s.kind == 'tb' then room = s.tokens else room = s.p1 - s.count end
    if s.left then room = math.min(room, s.left) end
    local k = math.max(cost, math.min(batch, room))
    if s.kind == 'sw' then k = math.floor(k) end
    amounts[1] = k
    debit(s, k)
  else
    granted = 0
    longest = wait
  end
elseif op == 'adjust' then
  for i = 1, n do
    local s = members[i]
    local delta = tonumber(s.a)
    if delta > 0 then debit(s, delta) else credit(s, -delta, s.d) end
  end
elseif op == 'observe' then
  for i = 1, n do
    local s = members[i]
    if s.a ~= '' then
      local remaining = tonumber(s.a)
      local ends = real + tonumber(s.b) * 1000000
      if s.left and ends <= s.until_ + 1000 then
        -- the active budget's window (an answer may arrive after a newer one): only tighten
        s.left = math.min(s.left, remaining)
      else
        s.left = remaining
        s.top = remaining
        s.until_ = ends
        s.gen = fmt(real)
      end
    end
    if s.c ~= '' then s.hold = math.max(s.hold, real + tonumber(s.c) * 1000000) end
    if s.kind == 'tb' then save_tb(s) else save_budget(s) end
  end
end

local reply = {granted, '0'}
if longest > 0 then reply[2] = fmt(longest) end
if short then
  local s = members[1]
  if s.kind == 'tb' then
    return granted .. ' ' .. reply[2] .. ' ' .. fmt(s.tokens) .. ' 0/' .. s.gen
  end
  return granted .. ' ' .. reply[2] .. ' ' .. s.count .. ' ' .. fmt(s.now) .. '/' .. s.gen
end
for i = 1, n do
  local s = members[i]
  if s.kind == 'tb' then
    reply[#reply + 1] = fmt(s.tokens)
    reply[#reply + 1] = '0/' .. s.gen
  else
    reply[#reply + 1] = s.count
    reply[#reply + 1] = fmt(s.now) .. '/' .. s.gen
  end
  if amounts[i] then reply[#reply + 1] = fmt(amounts[i]) else reply[#reply + 1] = '0' end
end
return reply
"""

SHA = hashlib.sha1(LUA.encode("utf-8")).hexdigest()
