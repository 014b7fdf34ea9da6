"""Rolling rate windows: at most `limit` units in any `length` of time.

An entry taken at time t counts while t > now - length, so it frees its units at exactly
t + length; that makes `retry_after` exact. Entries are named by the decision's token, so a
retried decision never takes twice and a completion can give back part of what it took.
`MemoryWindows` is the embedded default; `ledger.metering.redis_windows.RedisWindows` shares the
same windows between processes. Both pass tests/metering/test_windows.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import NamedTuple, Protocol


class WindowTake(NamedTuple):
    """Take `units` from the window counted under `key` (length in ns, limit in units)."""

    key: str
    length_ns: int
    limit: int
    units: int


class WindowKeep(NamedTuple):
    """Leave a token counting at most `units` in the window under `key`; with `length_ns`, what
    has expired under that length is evicted first, as reading the window would."""

    key: str
    length_ns: int | None
    units: int


class WindowStore(Protocol):
    def used(self, keys: Sequence[tuple[str, int]], now: int) -> list[int]:
        """Units counted now in each (key, length_ns) window."""

    def take(self, token: str, takes: Sequence[WindowTake], now: int) -> tuple[bool, list[int]]:
        """All or nothing: when every take fits, record them all under `token`; otherwise record
        nothing. Returns (taken, the units each window counted just before). A token already
        recorded in a window is not taken again there (it counts as fitting)."""

    def entries(self, key: str, length_ns: int, now: int) -> list[tuple[int, int]]:
        """(time, units) of the entries still counted, oldest first."""

    def release(self, token: str, key: str, units: int) -> int:
        """Give back up to `units` of what `token` took from `key`; returns what was given back."""

    def keep(self, token: str, key: str, units: int) -> int:
        """Leave `token` counting at most `units` in `key`, giving back the rest; returns what
        was given back. Idempotent: asked again, it gives back nothing more. A token left with
        nothing leaves the window (a later take under it counts again)."""

    def keep_all(self, token: str, keeps: Sequence[WindowKeep], now: int) -> list[int]:
        """`keep` in each window named, in order, as one call (one round trip on Redis);
        returns what each gave back."""


class _Log:
    """A window's entries, oldest first, as (time, units, token) tuples. The indexes by token
    hold only strings and ints: a dict of such atoms stays untracked by the garbage collector,
    where one holding fresh tuples would be re-tracked, and traversed again, on every insert."""

    __slots__ = ("at", "entries", "length", "newest", "released", "total", "units")

    def __init__(self, length: int) -> None:
        self.entries: deque[tuple[int, int, str]] = deque()
        self.at: dict[str, int] = {}  # token -> time taken
        self.units: dict[str, int] = {}  # token -> units taken
        self.released: dict[str, int] = {}
        self.total = 0
        self.length = length  # the longest length taken with (ns): when it is idle
        self.newest = 0  # the latest time taken at, whether or not that entry is still kept

    def evict(self, cutoff: int) -> None:
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            _, units, token = entries.popleft()
            del self.at[token], self.units[token]
            self.total -= units - (self.released.pop(token, 0) if self.released else 0)

    def clear(self) -> None:
        """Hold nothing (a swept log, kept to serve another key)."""
        self.entries.clear()
        self.at.clear()
        self.units.clear()
        self.released.clear()
        self.total = self.newest = 0

    def forget(self, token: str) -> None:
        """Drop a token whose units were all given back (rare: a linear scan is fine)."""
        self.entries.remove((self.at.pop(token), self.units.pop(token), token))
        self.released.pop(token, None)

    def units_of(self, token: str) -> int:
        units = self.units.get(token)
        return units - self.released.get(token, 0) if units else 0


def _insert(log: _Log, token: str, units: int, now: int) -> None:
    entry = (now, units, token)
    entries = log.entries
    if entries and now < entries[-1][0]:
        # An earlier time than the newest entry (another node's clock): keep time order.
        at = len(entries)
        while at and entries[at - 1][0] > now:
            at -= 1
        entries.insert(at, entry)
    else:
        entries.append(entry)
        if now > log.newest:
            log.newest = now
    log.at[token] = now
    log.units[token] = units
    log.total += units


SWEEP_EVERY = 65_536
"""Takes between two sweeps of the idle logs, at least (each sweep reads every log once)."""
_NEVER = -(2**63)
SWEEP_SLACK_NS = 60 * 10**9
"""How long past idle a log is kept at least (and until a second sweep finds it idle), for
requests stamped by a clock a little behind (as `RedisWindows` keeps a key `ttl_slack_ms` past
its window)."""


class MemoryWindows:
    """Windows in this process's memory (one process; not shared, not durable).

    As Redis lets an idle window's key expire, every `sweep_every` takes (or as many takes as
    there are logs, if more) drop the logs in which nothing has counted since the sweep before
    (`sweep`): an allowance's key names its period, so without the sweep a long-running process
    would keep one log per customer and period for ever. Dropping an idle log changes no
    answer: it counts nothing and holds no token. A log is kept through the first sweep that
    finds it idle so that a customer who comes back between sweeps finds their logs: made anew
    on every visit, they would feed the garbage collector's oldest generation, whose full
    collections traverse every log kept. For the same reason a dropped log is kept, emptied,
    for the next new key (at most as many as the logs left)."""

    def __init__(
        self, *, sweep_every: int = SWEEP_EVERY, sweep_slack_ns: int = SWEEP_SLACK_NS
    ) -> None:
        if sweep_every < 1 or sweep_slack_ns < 0:
            raise ValueError(
                f"sweep_every must be at least 1 (not {sweep_every}) and sweep_slack_ns at "
                f"least 0 (not {sweep_slack_ns})"
            )
        self._logs: dict[str, _Log] = {}
        self._spare: list[_Log] = []  # swept logs, emptied, to serve new keys
        self._sweep_every = self._until_sweep = sweep_every
        self._swept_to = _NEVER  # the previous sweep's `now`, less the slack
        self._sweep_slack = sweep_slack_ns

    def _log(self, key: str, length_ns: int, now: int) -> _Log | None:
        """The key's log with what has expired by `now` evicted (None: never taken from, or
        swept). An emptied log is kept until a sweep finds it idle since the sweep before:
        dropping and re-creating logs on every decision would feed the garbage collector's
        oldest generation."""
        log = self._logs.get(key)
        if log is not None and log.entries:
            log.evict(now - length_ns)
        return log

    def used(self, keys: Sequence[tuple[str, int]], now: int) -> list[int]:
        logs = [self._log(key, length, now) for key, length in keys]
        return [log.total if log else 0 for log in logs]

    def take(self, token: str, takes: Sequence[WindowTake], now: int) -> tuple[bool, list[int]]:
        self._until_sweep -= 1
        if not self._until_sweep:  # before the logs are looked up: none of them is dropped
            self.sweep(now)
        logs, used = [], []
        for t in takes:
            log = self._logs.get(t.key)
            if log is None:
                log = self._new_log(t.key, t.length_ns)
            else:
                if log.entries:
                    log.evict(now - t.length_ns)
                if t.length_ns > log.length:
                    log.length = t.length_ns
            logs.append(log)
            used.append(log.total)
        for log, t, u in zip(logs, takes, used, strict=True):
            if u + t.units > t.limit and token not in log.at:
                return False, used
        for log, t in zip(logs, takes, strict=True):
            if t.units and token not in log.at:
                self._record(log, token, t, now)
        return True, used

    def _new_log(self, key: str, length: int) -> _Log:
        if self._spare:
            log = self._spare.pop()
            log.length = length
        else:
            log = _Log(length)
        self._logs[key] = log
        return log

    @staticmethod
    def _record(log: _Log, token: str, t: WindowTake, now: int) -> None:
        _insert(log, token, t.units, now)
        assert log.total <= t.limit  # M5

    def sweep(self, now: int) -> int:
        """Drop the logs in which nothing has counted since the previous sweep (by the slack:
        nothing taken at or after the previous sweep's `now` less the slack can count, nor at
        this `now` less the slack); returns how many were dropped. The next sweep comes after
        `sweep_every` takes, or after as many takes as logs are left when there are more: a
        sweep reads every log, so its cost per take stays constant."""
        cutoff = now - self._sweep_slack
        idle_since = min(self._swept_to, cutoff)
        self._swept_to = cutoff
        logs, spare = self._logs, self._spare
        # Written out rather than a method call: a sweep reads every log.
        idle = [key for key, log in logs.items() if log.newest <= idle_since - log.length]
        room = len(logs) - len(idle) - len(spare)
        for key in idle:
            log = logs.pop(key)
            if room > 0:
                log.clear()
                spare.append(log)
                room -= 1
        self._until_sweep = max(self._sweep_every, len(logs))
        return len(idle)

    def restore(self, token: str, takes: Sequence[WindowTake], at: int) -> None:
        """Record `takes` under `token` as taken at `at`, as recorded decisions took them:
        without checking the limits (a limit lowered since keeps what was taken under the
        old one) and without evicting. For a meter rebuilding its windows on start."""
        for t in takes:
            log = self._logs.get(t.key)
            if log is None:
                log = self._new_log(t.key, t.length_ns)
            log.length = max(log.length, t.length_ns)
            if t.units and token not in log.at:
                _insert(log, token, t.units, at)

    def entries(self, key: str, length_ns: int, now: int) -> list[tuple[int, int]]:
        log = self._log(key, length_ns, now)
        if log is None:
            return []
        return [(t, units - log.released.get(token, 0)) for t, units, token in log.entries]

    def release(self, token: str, key: str, units: int) -> int:
        if units < 0:
            raise ValueError(f"release of {units} units: units must not be negative")
        log = self._logs.get(key)
        if log is None:
            return 0
        return self._give_back(log, token, min(units, log.units_of(token)))

    def keep(self, token: str, key: str, units: int) -> int:
        if units < 0:
            raise ValueError(f"keep of {units} units: units must not be negative")
        log = self._logs.get(key)
        if log is None:
            return 0
        return self._give_back(log, token, max(0, log.units_of(token) - units))

    def keep_all(self, token: str, keeps: Sequence[WindowKeep], now: int) -> list[int]:
        for k in keeps:  # all refused before any is kept, as on Redis
            if k.units < 0:
                raise ValueError(f"keep of {k.units} units: units must not be negative")
        given = []
        for k in keeps:
            if k.length_ns is not None:
                self._log(k.key, k.length_ns, now)
            given.append(self.keep(token, k.key, k.units))
        return given

    @staticmethod
    def _give_back(log: _Log, token: str, given: int) -> int:
        left = log.units_of(token)
        if given:
            log.released[token] = log.released.get(token, 0) + given
            log.total -= given
        if given == left and token in log.at:
            log.forget(token)  # given back whole: a later take under the token counts again
        return given
