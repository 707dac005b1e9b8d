"""The one Lua script behind every Redis limiter decision (single limiters and groups alike).

Each call names its members (one limiter, or every limiter of a group) and an operation; the
script reads every member's state, decides for all of them at once and writes, atomically.

KEYS: two per member: ``KEYS[2i-1]`` its state (token bucket: a hash ``{tokens, ts}``; sliding
window: a sorted set of calls), ``KEYS[2i]`` the provider's budget for it (a hash ``{left,
top, until, hold, gen}``, written by ``observe``).  ARGV[1] is the operation, ARGV[2] the member count,
then seven arguments per member: kind (``tb`` or ``sw``), two parameters (rate and capacity, or
max_calls and the window in microseconds), and ``a, b, c, d``:

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
microseconds the member's calls were logged at, and the generation of the provider budget they
were taken from), and amount what was taken (a lease's size).  Numbers that may be fractional are
returned as strings (Redis would truncate a Lua number).

The provider budget: while ``now < until`` the member grants at most ``left`` more in total
(``top`` is the remaining reported, which a give-back never exceeds); while ``now < hold`` it
grants nothing.  A report whose reset falls within the active budget's (1 ms of slack) is of the
same window, possibly older than one seen already: it only lowers ``left``; a report that
resets later replaces the budget and bumps ``gen``.  Token bucket and window rules are the in-memory ones
(API section 2).  Window members are ``"<time>:<i>"``, ``i`` zero-padded to 16 digits and one
more than the newest member logged at the same time, so members never collide (even after a
give-back removed some) and the newest one sorts last among equal times.
"""

from __future__ import annotations

import hashlib

__all__ = ["LUA", "SHA", "PER_MEMBER"]

PER_MEMBER = 7

LUA = r"""
local op = ARGV[1]
local n = tonumber(ARGV[2])
local t = redis.call('TIME')
local real = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function fmt(x) return string.format('%.17g', x) end

local function load(i)
  local a = 3 + (i - 1) * 7
  local s = {kind = ARGV[a], p1 = tonumber(ARGV[a + 1]), p2 = tonumber(ARGV[a + 2]),
             a = ARGV[a + 3], b = ARGV[a + 4], c = ARGV[a + 5], d = ARGV[a + 6],
             key = KEYS[2 * i - 1], pkey = KEYS[2 * i], now = real}
  if s.kind == 'tb' then
    s.tokens = s.p2
    s.last = real
    local st = redis.call('HMGET', s.key, 'tokens', 'ts')
    if st[1] then
      s.tokens = tonumber(st[1])
      s.last = tonumber(st[2])
      if real > s.last then
        s.tokens = math.min(s.p2, s.tokens + s.p1 * (real - s.last) / 1000000)
        s.last = real
      end
    end
  else
    s.next = 0
    local newest = redis.call('ZRANGE', s.key, -1, -1, 'WITHSCORES')
    if newest[2] then
      local score = tonumber(newest[2])
      if score > s.now then s.now = score end
      if score == s.now then
        s.next = tonumber(string.match(newest[1], ':(%d+)$') or '-1') + 1
      end
    end
    redis.call('ZREMRANGEBYSCORE', s.key, '-inf', fmt(s.now - s.p2))
    s.count = redis.call('ZCARD', s.key)
  end
  local b = redis.call('HMGET', s.pkey, 'left', 'until', 'hold', 'top', 'gen')
  s.hold = tonumber(b[3]) or 0
  s.gen = b[5] or '0'
  local u = tonumber(b[2])
  if u and u > real and b[1] then
    s.left = tonumber(b[1])
    s.top = tonumber(b[4])
    s.until_ = u
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

local function save_tb(s)
  local ttl = math.min(math.ceil((s.p2 - s.tokens) / s.p1 * 1000 + (s.last - real) / 1000), 2^52)
  if ttl > 0 then
    redis.call('HSET', s.key, 'tokens', fmt(s.tokens), 'ts', fmt(s.last))
    redis.call('PEXPIRE', s.key, string.format('%d', ttl))
  else
    redis.call('DEL', s.key)
  end
end

local function expire_sw(s)
  if s.count > 0 then
    local ttl = math.min(math.ceil((s.now + s.p2 - real) / 1000), 2^52)
    redis.call('PEXPIRE', s.key, string.format('%d', ttl))
  end
end

-- take `k` (>= 0); a token bucket may go negative
local function debit(s, k)
  if k <= 0 then return end
  if s.left then
    s.left = s.left - k
    redis.call('HSET', s.pkey, 'left', fmt(s.left))
  end
  if s.kind == 'tb' then
    s.tokens = s.tokens - k
    save_tb(s)
    return
  end
  local stamp = fmt(s.now)
  local args = {}
  for j = s.next, s.next + k - 1 do
    args[#args + 1] = stamp
    args[#args + 1] = stamp .. ':' .. string.format('%016d', j)
    if #args >= 2000 then
      redis.call('ZADD', s.key, unpack(args))
      args = {}
    end
  end
  if #args > 0 then redis.call('ZADD', s.key, unpack(args)) end
  s.next = s.next + k
  s.count = s.count + k
  expire_sw(s)
end

-- give back `k` (>= 0) taken under `receipt` ("<stamp>/<budget generation>"): a window drops
-- calls logged at that stamp still in it; the provider budget it was taken from gets it back
local function credit(s, k, receipt)
  if k <= 0 then return end
  local stamp, gen = string.match(receipt, '^([^/]*)/?(.*)$')
  if s.left and gen == s.gen then
    s.left = math.min(s.top, s.left + k)
    redis.call('HSET', s.pkey, 'left', fmt(s.left))
  end
  if s.kind == 'tb' then
    s.tokens = math.min(s.p2, s.tokens + k)
    save_tb(s)
    return
  end
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
  if s.count == 0 then redis.call('DEL', s.key) end
end

local function state(s)
  if s.kind == 'tb' then return fmt(s.tokens) end
  return s.count
end

local members = {}
for i = 1, n do members[i] = load(i) end
local amounts = {}
for i = 1, n do amounts[i] = 0 end
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
    for i = 1, n do
      amounts[i] = tonumber(members[i].a)
      debit(members[i], amounts[i])
    end
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
        redis.call('HSET', s.pkey, 'left', fmt(s.left))
      else
        s.left = remaining
        s.until_ = ends
        s.gen = tostring(redis.call('HINCRBY', s.pkey, 'gen', 1))
        redis.call('HSET', s.pkey, 'left', fmt(s.left), 'top', fmt(s.left), 'until', fmt(s.until_))
      end
    end
    if s.c ~= '' then
      s.hold = math.max(s.hold, real + tonumber(s.c) * 1000000)
      redis.call('HSET', s.pkey, 'hold', fmt(s.hold))
    end
    local last = math.max(s.hold, s.until_ or 0)
    if last > real then
      redis.call('PEXPIRE', s.pkey, string.format('%d', math.min(math.ceil((last - real) / 1000), 2^52)))
    else
      redis.call('DEL', s.pkey)
    end
  end
end

local reply = {granted, fmt(longest)}
for i = 1, n do
  local s = members[i]
  reply[#reply + 1] = state(s)
  reply[#reply + 1] = fmt(s.now) .. '/' .. s.gen
  reply[#reply + 1] = fmt(amounts[i])
end
return reply
"""

SHA = hashlib.sha1(LUA.encode("utf-8")).hexdigest()
