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


class _Log:
    """A window's entries, oldest first, as (time, units, token) tuples: immutable, so the
    garbage collector stops tracking them. What a token gave back is kept aside in `released`."""

    __slots__ = ("by_token", "entries", "released", "total")

    def __init__(self) -> None:
        self.entries: deque[tuple[int, int, str]] = deque()
        self.by_token: dict[str, tuple[int, int, str]] = {}
        self.released: dict[str, int] = {}
        self.total = 0

    def evict(self, cutoff: int) -> None:
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            _, units, token = entries.popleft()
            del self.by_token[token]
            self.total -= units - (self.released.pop(token, 0) if self.released else 0)

    def forget(self, token: str) -> None:
        """Drop a token whose units were all given back (rare: a linear scan is fine)."""
        self.entries.remove(self.by_token.pop(token))
        self.released.pop(token, None)

    def units_of(self, token: str) -> int:
        entry = self.by_token.get(token)
        return entry[1] - self.released.get(token, 0) if entry else 0


class MemoryWindows:
    """Windows in this process's memory (one process; not shared, not durable)."""

    def __init__(self) -> None:
        self._logs: dict[str, _Log] = {}

    def _log(self, key: str, length_ns: int, now: int) -> _Log | None:
        """The key's log with what has expired by `now` evicted (None: nothing counted)."""
        log = self._logs.get(key)
        if log is not None and log.entries:
            log.evict(now - length_ns)
            if not log.entries:
                del self._logs[key]  # an idle key costs nothing
                return None
        return log

    def used(self, keys: Sequence[tuple[str, int]], now: int) -> list[int]:
        logs = [self._log(key, length, now) for key, length in keys]
        return [log.total if log else 0 for log in logs]

    def take(self, token: str, takes: Sequence[WindowTake], now: int) -> tuple[bool, list[int]]:
        logs = [self._log(t.key, t.length_ns, now) for t in takes]
        used = [log.total if log else 0 for log in logs]
        for log, t, u in zip(logs, takes, used, strict=True):
            if u + t.units > t.limit and (log is None or token not in log.by_token):
                return False, used
        for t in takes:
            if not t.units:
                continue
            log = self._logs.get(t.key) or self._logs.setdefault(t.key, _Log())
            if token not in log.by_token:
                self._record(log, token, t, now)
        return True, used

    @staticmethod
    def _record(log: _Log, token: str, t: WindowTake, now: int) -> None:
        entry = (now, t.units, token)
        entries = log.entries
        if entries and now < entries[-1][0]:
            # An earlier time than the newest entry (another node's clock): keep time order.
            at = len(entries)
            while at and entries[at - 1][0] > now:
                at -= 1
            entries.insert(at, entry)
        else:
            entries.append(entry)
        log.by_token[token] = entry
        log.total += t.units
        assert log.total <= t.limit  # M5

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
        left = log.units_of(token)
        given = min(units, left)
        if given:
            log.released[token] = log.released.get(token, 0) + given
            log.total -= given
        if given == left and token in log.by_token:
            log.forget(token)  # given back whole: a later take under the token counts again
        return given
