"""Rolling rate windows on Redis, shared by every process that points at the same server.

Same contract as `ledger.metering.windows.MemoryWindows` (tests/metering/test_windows.py runs one
suite on both): an entry taken at time t counts while t > now - length; `take` is all or nothing
across windows and names its entries by a token so a retry never takes twice.

Every decision is one Lua script call, so Redis runs it atomically: two API nodes racing for the
last unit cannot both get it. Layout of a window `key` (under the store's prefix):

- `<prefix>w:<key>:z`, a sorted set of the entries, oldest first. The score is the entry's time in
  whole milliseconds and the member is `<ns within that ms, 6 digits>:<arrival, 16 digits>:<token>`,
  so (score, member) orders by exact ns, then by arrival. Scores are doubles and so are Lua's
  numbers: a ns time (~1.8e18) would round, a ms one (~1.8e12) is exact. Ordered by time, not
  arrival, so an entry from a caller whose clock lags is still evicted on time.
- `<prefix>w:<key>:h`, a hash: `u:<token>` units, `t:<token>` the exact ns time as a decimal
  string, `#total` the sum of the units, `#seq` the arrival counter.

Units and limits cross into Lua as decimal strings and stay strings there (Lua's numbers are
doubles), compared and added digit by digit; totals live in Redis's 64-bit HINCRBY counters.
Keys expire `length + ttl_slack_ms` after their newest entry, so idle windows disappear. The
slack is there because `now` comes from the callers' clocks, not Redis's: a key must outlive
its entries on the slowest caller's clock.

A take (and `keep_all`) names the keys of all its windows, so on Redis Cluster give the prefix
a hash tag (`prefix="{tollgate}:"`) to keep every window in one slot; otherwise Redis refuses
(CROSSSLOT).

`release` is not idempotent (the protocol gives it no id): a client that retries a release whose
reply was lost can give back twice, at most what the token took. `keep` (leave the token at most
so many units) is idempotent, and is what a settlement's give-back uses. `from_url` builds its
client without command retries; a client passed in keeps its own retry policy.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence
from typing import Any

import redis
from redis.commands.core import Script

from ledger.metering.errors import InvalidRequestError, MeteringError
from ledger.metering.windows import WindowKeep, WindowTake

LIMIT_MAX = 2**63 - 1
"""Largest window limit: a total never exceeds its limit, so Redis's 64-bit HINCRBY holds it."""

NS_PER_MS = 1_000_000
DEFAULT_TTL_SLACK_MS = 60_000

_DECIMAL_LUA = """
-- Units, limits and totals stay canonical decimal strings: Lua's numbers are doubles, exact only
-- below 2^53, so they are compared and added digit by digit (string.byte: no locale involved).
local function lt(a, b)
  if #a ~= #b then return #a < #b end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return false
end

local function add(a, b)
  local digits, carry, i, j = {}, 0, #a, #b
  while i > 0 or j > 0 or carry > 0 do
    local d = carry
    if i > 0 then d = d + string.byte(a, i) - 48 end
    if j > 0 then d = d + string.byte(b, j) - 48 end
    digits[#digits + 1] = d % 10
    carry = math.floor(d / 10)
    i, j = i - 1, j - 1
  end
  return string.reverse(table.concat(digits))
end
"""

# Shared by the scripts. `evict` drops the head entries whose time is <= the cutoff (given as
# whole ms and the ns within it), keeping `#total` equal to the sum of the units left.
_EVICT_LUA = (
    _DECIMAL_LUA
    + """
local function evict(z, h, cut_ms, cut_sub)
  while true do
    local head = redis.call('ZRANGE', z, 0, 99, 'WITHSCORES')
    if #head == 0 then return end
    for i = 1, #head, 2 do
      local member, ms = head[i], tonumber(head[i + 1])
      if ms > cut_ms or (ms == cut_ms and tonumber(string.sub(member, 1, 6)) > cut_sub) then
        return
      end
      local token = string.sub(member, 25)
      local units = redis.call('HGET', h, 'u:' .. token)
      redis.call('ZREM', z, member)
      redis.call('HDEL', h, 'u:' .. token, 't:' .. token, 'm:' .. token)
      if units and units ~= '0' then
        redis.call('HINCRBY', h, '#total', '-' .. units)
      end
    end
  end
end

local function total(h)
  return redis.call('HGET', h, '#total') or '0'
end

-- Never shorten a TTL: a window of another length may share the key.
local function keep_for(key, ttl)
  if redis.call('PTTL', key) < tonumber(ttl) then redis.call('PEXPIRE', key, ttl) end
end
"""
)

# KEYS: z1, h1, z2, h2, ...  ARGV: token, now_ms, now_sub (6 digits), now_ns, then per window
# cut_ms, cut_sub, limit, units, ttl_ms. Returns 1 (taken) or 0, then each window's total just
# before the take. Every check comes before the first write: a script that fails half-way keeps
# its writes, so nothing below may fail once writing starts (limit <= 2^63 - 1 keeps HINCRBY
# from overflowing).
_TAKE_LUA = (
    _EVICT_LUA
    + """
local token, now_ms, now_sub, now_ns = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local n = #KEYS / 2
local function arg(i, k) return ARGV[4 + (i - 1) * 5 + k] end
local function has(h) return redis.call('HEXISTS', h, 'u:' .. token) == 1 end

for i = 1, n do
  evict(KEYS[2 * i - 1], KEYS[2 * i], tonumber(arg(i, 1)), tonumber(arg(i, 2)))
end
local out, fits = {0}, true
for i = 1, n do
  local h = KEYS[2 * i]
  out[i + 1] = total(h)
  if not has(h) and lt(arg(i, 3), add(out[i + 1], arg(i, 4))) then fits = false end
end
if not fits then return out end
for i = 1, n do
  local z, h, units = KEYS[2 * i - 1], KEYS[2 * i], arg(i, 4)
  if units ~= '0' and not has(h) then
    local seq = redis.call('HINCRBY', h, '#seq', 1)
    local member = string.format('%s:%016d:%s', now_sub, seq, token)
    redis.call('ZADD', z, now_ms, member)
    redis.call('HSET', h, 'u:' .. token, units, 't:' .. token, now_ns, 'm:' .. token, member)
    redis.call('HINCRBY', h, '#total', units)
    keep_for(z, arg(i, 5))
    keep_for(h, arg(i, 5))
  end
end
out[1] = 1
return out
"""
)

# KEYS: z1, h1, ...  ARGV: cut_ms, cut_sub per window. Returns each window's total.
_USED_LUA = (
    _EVICT_LUA
    + """
local used = {}
for i = 1, #KEYS / 2 do
  evict(KEYS[2 * i - 1], KEYS[2 * i], tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i]))
  used[i] = total(KEYS[2 * i])
end
return used
"""
)

# KEYS: z, h.  ARGV: cut_ms, cut_sub. Returns time1, units1, time2, units2, ... oldest first.
_ENTRIES_LUA = (
    _EVICT_LUA
    + """
local z, h = KEYS[1], KEYS[2]
evict(z, h, tonumber(ARGV[1]), tonumber(ARGV[2]))
local out = {}
for _, member in ipairs(redis.call('ZRANGE', z, 0, -1)) do
  local token = string.sub(member, 25)
  local row = redis.call('HMGET', h, 't:' .. token, 'u:' .. token)
  out[#out + 1] = row[1]
  out[#out + 1] = row[2]
end
return out
"""
)

# A token given back whole leaves the window (entry, units, time, member), so a later take
# under it counts again.
_FORGET_LUA = """
local function forget(z, h, token)
  local member = redis.call('HGET', h, 'm:' .. token)
  if member then redis.call('ZREM', z, member) end
  redis.call('HDEL', h, 'u:' .. token, 't:' .. token, 'm:' .. token)
end
"""

# KEYS: z, h.  ARGV: token, units. Returns what was given back. No eviction, as in
# MemoryWindows.
_RELEASE_LUA = (
    _DECIMAL_LUA
    + _FORGET_LUA
    + """
local z, h, token, want = KEYS[1], KEYS[2], ARGV[1], ARGV[2]
local field = 'u:' .. token
local have = redis.call('HGET', h, field)
if not have then return '0' end
local given = have
if lt(want, have) then given = want end
if given ~= '0' then
  redis.call('HINCRBY', h, field, '-' .. given)
  redis.call('HINCRBY', h, '#total', '-' .. given)
end
if given == have then forget(z, h, token) end
return given
"""
)


# KEYS: z1, h1, z2, h2, ...  ARGV: token, then per window cut_ms, cut_sub (both '' for no
# eviction) and the units to keep. Returns, per window, the units held before and held now.
# Idempotent: a token holding no more than asked is left alone, so a script stopped half-way
# (nothing here fails once keys exist) is finished by asking again. A token left with nothing
# leaves the window.
_KEEP_LUA = (
    _EVICT_LUA
    + _FORGET_LUA
    + """
local token, out = ARGV[1], {}
for i = 1, #KEYS / 2 do
  local z, h = KEYS[2 * i - 1], KEYS[2 * i]
  local cut_ms, cut_sub, want = ARGV[3 * i - 1], ARGV[3 * i], ARGV[3 * i + 1]
  if cut_ms ~= '' then evict(z, h, tonumber(cut_ms), tonumber(cut_sub)) end
  local field = 'u:' .. token
  local have = redis.call('HGET', h, field) or '0'
  local held = have
  if lt(want, have) then
    redis.call('HINCRBY', h, '#total', '-' .. have)
    if want == '0' then
      forget(z, h, token)
    else
      redis.call('HINCRBY', h, '#total', want)
      redis.call('HSET', h, field, want)
    end
    held = want
  end
  table.insert(out, have)
  table.insert(out, held)
end
return out
"""
)


class WindowStoreUnavailableError(MeteringError):
    """Redis could not answer (unreachable, refused, out of memory...); nothing was taken."""

    def __init__(self, where: str, cause: BaseException) -> None:
        self.where = where
        super().__init__(
            f"the Redis window store at {where} failed: {cause}; nothing was taken or released. "
            "Check that Redis is running and reachable there (or point RedisWindows.from_url at "
            "one that is), then retry the request"
        )


def _describe_url(url: str) -> str:
    """The URL without its password (and without the query, which may hold one)."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if ":" in netloc:  # IPv6
        netloc = f"[{netloc}]"
    if parts.port is not None:
        netloc = f"{netloc}:{parts.port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _describe_client(client: redis.Redis) -> str:
    kwargs = client.connection_pool.connection_kwargs
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}"
    host, port, db = kwargs.get("host", "localhost"), kwargs.get("port", 6379), kwargs.get("db", 0)
    return f"redis://{host}:{port}/{db}"


def _count(field: str, value: int, most: int | None = None) -> str:
    """`value` as the canonical decimal the scripts compare, once checked to be in range."""
    if value < 0 or (most is not None and value > most):
        top = "" if most is None else f" to {most}"
        raise InvalidRequestError(field, f"must be from 0{top} in a Redis window, not {value}")
    return str(value)


def _cutoff(now: int, length_ns: int) -> list[str]:
    """The eviction cutoff now - length as [whole ms, ns within the ms] (floor division, so the
    pair orders like the time even when it is negative)."""
    ms, sub = divmod(now - length_ns, NS_PER_MS)
    return [str(ms), str(sub)]


class RedisWindows:
    """Windows in Redis: shared by every client of the server, atomic per decision."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "tollgate:",
        ttl_slack_ms: int = DEFAULT_TTL_SLACK_MS,
        where: str | None = None,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._slack_ms = ttl_slack_ms
        self._where = where or _describe_client(client)
        self._owns_client = False
        self._take = client.register_script(_TAKE_LUA)
        self._used = client.register_script(_USED_LUA)
        self._entries = client.register_script(_ENTRIES_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._keep = client.register_script(_KEEP_LUA)

    @classmethod
    def from_url(cls, url: str, prefix: str = "tollgate:", **client_kwargs: Any) -> RedisWindows:
        """Connect to `url` (redis://, rediss:// or unix://). Timeouts default to a few seconds
        so a dead server is reported instead of hanging the request."""
        client_kwargs.setdefault("socket_connect_timeout", 5.0)
        client_kwargs.setdefault("socket_timeout", 10.0)
        client = redis.Redis.from_url(url, **client_kwargs)
        store = cls(client, prefix=prefix, where=_describe_url(url))
        store._owns_client = True
        return store

    def close(self) -> None:
        """Close the connections of a client made by `from_url` (a client passed in is left)."""
        if self._owns_client:
            self._client.close()

    def _keys(self, key: str) -> list[str]:
        base = f"{self._prefix}w:{key}"
        return [f"{base}:z", f"{base}:h"]

    def _ttl_ms(self, length_ns: int) -> str:
        return str(-(-length_ns // NS_PER_MS) + self._slack_ms)  # ceil: never before t + length

    def _run(self, script: Script, keys: list[str], args: list[str]) -> Any:
        try:
            return script(keys=keys, args=args)
        except redis.RedisError as exc:
            raise WindowStoreUnavailableError(self._where, exc) from exc

    def used(self, keys: Sequence[tuple[str, int]], now: int) -> list[int]:
        if not keys:
            return []
        names: list[str] = []
        args: list[str] = []
        for key, length in keys:
            names += self._keys(key)
            args += _cutoff(now, length)
        return [int(total) for total in self._run(self._used, names, args)]

    def take(self, token: str, takes: Sequence[WindowTake], now: int) -> tuple[bool, list[int]]:
        if not takes:
            return True, []
        ms, sub = divmod(now, NS_PER_MS)
        names: list[str] = []
        args = [token, str(ms), f"{sub:06d}", str(now)]
        for t in takes:
            names += self._keys(t.key)
            args += _cutoff(now, t.length_ns)
            args += [_count("limit", t.limit, LIMIT_MAX), _count("units", t.units)]
            args.append(self._ttl_ms(t.length_ns))
        taken, *used = self._run(self._take, names, args)
        return taken == 1, [int(total) for total in used]

    def entries(self, key: str, length_ns: int, now: int) -> list[tuple[int, int]]:
        flat = self._run(self._entries, self._keys(key), _cutoff(now, length_ns))
        return [(int(flat[i]), int(flat[i + 1])) for i in range(0, len(flat), 2)]

    def release(self, token: str, key: str, units: int) -> int:
        given = self._run(self._release, self._keys(key), [token, _count("units", units)])
        return int(given)

    def keep(self, token: str, key: str, units: int) -> int:
        return self.keep_all(token, [WindowKeep(key, None, units)], 0)[0]

    def keep_all(self, token: str, keeps: Sequence[WindowKeep], now: int) -> list[int]:
        if not keeps:
            return []
        names: list[str] = []
        args = [token]
        for k in keeps:
            names += self._keys(k.key)
            args += ["", ""] if k.length_ns is None else _cutoff(now, k.length_ns)
            args.append(_count("units", k.units))
        flat = self._run(self._keep, names, args)
        return [int(flat[i]) - int(flat[i + 1]) for i in range(0, len(flat), 2)]
