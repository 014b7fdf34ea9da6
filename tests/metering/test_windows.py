"""One suite for every rolling-window store (`MemoryWindows`, `RedisWindows`).

Plain tests pin each rule of the `WindowStore` contract at times near 1.8e18 ns (where a double
would round): an entry frees its units at exactly t + length, `take` is all or nothing, a token
is never taken twice, `release` gives back at most what was taken, entries come oldest first
with their exact times. A Hypothesis state machine then runs random operations on a store, a
`MemoryWindows` and a linear-scan reference, requires the same answers from all three, and
checks M5 (specs/metering.py). The Redis-only tests cover two clients sharing windows,
concurrent takes never exceeding a limit, key expiry, and an unreachable server.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger.metering.errors import InvalidRequestError, MeteringError
from ledger.metering.windows import MemoryWindows, WindowKeep, WindowStore, WindowTake
from specs.metering import window_within_limit
from tests.core.strategies import scaled

from .conftest import MakeWindows, fresh_prefix, kind_of, require_redis_py
from .fixtures import HOUR, T0, allowance_layer, feature, make_meter, window, windows_layer

T = 1_800_000_000_123_456_789  # ns, past 2**60: a double cannot tell T from T + 1
SECOND = 1_000_000_000
MS = 1_000_000


def take1(
    w: WindowStore, token: str, key: str, units: int, now: int, *, limit: int, length: int
) -> tuple[bool, list[int]]:
    return w.take(token, [WindowTake(key, length, limit, units)], now)


# --- expiry --------------------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, MS - 1, MS, MS + 1, 1_500_001, 60 * SECOND])
@pytest.mark.parametrize("t", [T, 1_799_999_999_999_999_999, 1_800_000_000_000_999_999])
def test_an_entry_frees_its_units_at_exactly_t_plus_length(
    windows: WindowStore, t: int, length: int
) -> None:
    assert take1(windows, "a", "k", 5, t, limit=5, length=length) == (True, [0])
    # One ns before t + length the entry still counts: the window is full.
    assert windows.used([("k", length)], t + length - 1) == [5]
    assert windows.entries("k", length, t + length - 1) == [(t, 5)]
    assert take1(windows, "b", "k", 1, t + length - 1, limit=5, length=length) == (False, [5])
    # At t + length it no longer does.
    assert windows.used([("k", length)], t + length) == [0]
    assert windows.entries("k", length, t + length) == []
    assert take1(windows, "c", "k", 5, t + length, limit=5, length=length) == (True, [0])
    assert windows.entries("k", length, t + length) == [(t + length, 5)]


def test_an_expired_token_can_take_again(windows: WindowStore) -> None:
    assert take1(windows, "a", "k", 3, T, limit=5, length=SECOND) == (True, [0])
    assert take1(windows, "a", "k", 3, T + SECOND, limit=5, length=SECOND) == (True, [0])
    assert windows.entries("k", SECOND, T + SECOND) == [(T + SECOND, 3)]


# --- all or nothing ------------------------------------------------------------------------------


def test_take_is_all_or_nothing_across_windows(windows: WindowStore) -> None:
    assert take1(windows, "first", "a", 8, T, limit=10, length=SECOND) == (True, [0])
    takes = [
        WindowTake("b", SECOND, 100, 5),
        WindowTake("a", SECOND, 10, 5),  # 8 + 5 > 10
        WindowTake("c", 2 * SECOND, 50, 5),
    ]
    # Refused, with each window's units counted now, in the order of the takes.
    assert windows.take("x", takes, T + 1) == (False, [0, 8, 0])
    assert windows.used([("a", SECOND), ("b", SECOND), ("c", 2 * SECOND)], T + 1) == [8, 0, 0]
    assert windows.entries("b", SECOND, T + 1) == []
    assert windows.entries("c", 2 * SECOND, T + 1) == []
    # Nothing was recorded under the token either: there is nothing to give back.
    assert windows.release("x", "b", 5) == 0
    # Once `a` has room, the same token takes from every window.
    fitting = [WindowTake("b", SECOND, 100, 5), WindowTake("a", SECOND, 10, 2)]
    assert windows.take("x", fitting, T + 2) == (True, [0, 8])  # counted just before
    assert windows.used([("a", SECOND), ("b", SECOND)], T + 2) == [10, 5]


def test_refusal_reports_units_after_eviction(windows: WindowStore) -> None:
    assert take1(windows, "old", "a", 4, T, limit=10, length=SECOND) == (True, [0])
    assert take1(windows, "new", "a", 6, T + SECOND // 2, limit=10, length=SECOND) == (True, [4])
    # At T + SECOND the first entry has gone: 6 counted, and 6 + 5 > 10.
    assert take1(windows, "x", "a", 5, T + SECOND, limit=10, length=SECOND) == (False, [6])
    assert take1(windows, "y", "a", 4, T + SECOND, limit=10, length=SECOND) == (True, [6])


def test_a_zero_unit_take_records_nothing(windows: WindowStore) -> None:
    assert take1(windows, "z", "k", 0, T, limit=5, length=SECOND) == (True, [0])
    assert windows.entries("k", SECOND, T) == []
    assert windows.used([("k", SECOND)], T) == [0]
    # Not recorded, so the token can still take units later.
    assert take1(windows, "z", "k", 2, T + 1, limit=5, length=SECOND) == (True, [0])
    assert windows.entries("k", SECOND, T + 1) == [(T + 1, 2)]
    # A full window still admits a zero-unit take (0 more units fit).
    assert take1(windows, "f", "k", 3, T + 2, limit=5, length=SECOND) == (True, [2])
    assert take1(windows, "zero", "k", 0, T + 3, limit=5, length=SECOND) == (True, [5])
    assert windows.used([("k", SECOND)], T + 3) == [5]


# --- tokens --------------------------------------------------------------------------------------


def test_the_same_token_is_never_taken_twice(windows: WindowStore) -> None:
    for attempt, before in enumerate([0, 3, 3]):  # a retried decision
        assert take1(windows, "tok", "k", 3, T + attempt, limit=3, length=SECOND) == (
            True,
            [before],
        )
    assert windows.used([("k", SECOND)], T + 5) == [3]
    assert windows.entries("k", SECOND, T + 5) == [(T, 3)]
    # The window is full, yet the retry fits: its units are already counted.
    assert take1(windows, "other", "k", 1, T + 5, limit=3, length=SECOND) == (False, [3])
    # A retry that adds a window takes only from the new one.
    both = [WindowTake("k", SECOND, 3, 3), WindowTake("j", SECOND, 10, 3)]
    assert windows.take("tok", both, T + 6) == (True, [3, 0])
    assert windows.used([("k", SECOND), ("j", SECOND)], T + 6) == [3, 3]


def test_tokens_with_separators_and_unicode(windows: WindowStore) -> None:
    tokens = ["a:b:c", "00000:0000000000000001:x", "ünï cødé ✓", ""]
    for i, token in enumerate(tokens):
        before = i * (i + 1) // 2
        assert take1(windows, token, "k", i + 1, T + i, limit=100, length=SECOND) == (
            True,
            [before],
        )
    assert windows.entries("k", SECOND, T + 9) == [(T + i, i + 1) for i in range(len(tokens))]
    assert [windows.release(token, "k", 100) for token in tokens] == [1, 2, 3, 4]
    assert windows.used([("k", SECOND)], T + 9) == [0]


def test_release_gives_back_at_most_what_was_taken(windows: WindowStore) -> None:
    assert take1(windows, "tok", "k", 5, T, limit=5, length=SECOND) == (True, [0])
    assert windows.release("tok", "k", 2) == 2
    assert windows.used([("k", SECOND)], T + 1) == [3]
    assert windows.release("tok", "k", 10) == 3  # only 3 left
    assert windows.used([("k", SECOND)], T + 1) == [0]
    assert windows.release("tok", "k", 1) == 0
    assert windows.release("nobody", "k", 1) == 0
    assert windows.release("tok", "elsewhere", 1) == 0
    assert windows.release("tok", "k", 0) == 0
    # Given back whole, the token leaves the window: taking under it again counts (a decision
    # whose holds failed gives its units back, and its retry must take them anew).
    assert windows.entries("k", SECOND, T + 1) == []
    assert take1(windows, "tok", "k", 5, T + 2, limit=5, length=SECOND) == (True, [0])
    assert windows.used([("k", SECOND)], T + 2) == [5]
    assert take1(windows, "tok", "k", 5, T + 3, limit=5, length=SECOND) == (True, [5])  # once
    assert windows.used([("k", SECOND)], T + 3) == [5]
    # The new entry expires on its own time.
    assert windows.entries("k", SECOND, T + SECOND) == [(T + 2, 5)]
    assert windows.used([("k", SECOND)], T + 2 + SECOND) == [0]


def test_keep_leaves_a_token_at_most_so_many_units_however_often_asked(
    windows: WindowStore,
) -> None:
    assert take1(windows, "tok", "k", 5, T, limit=9, length=SECOND) == (True, [0])
    assert take1(windows, "other", "k", 4, T, limit=9, length=SECOND) == (True, [5])
    assert windows.keep("tok", "k", 2) == 3
    assert windows.keep("tok", "k", 2) == 0  # asked again: nothing more
    assert windows.keep("tok", "k", 4) == 0  # never takes back
    assert windows.used([("k", SECOND)], T + 1) == [2 + 4]
    assert windows.entries("k", SECOND, T + 1) == [(T, 2), (T, 4)]
    assert windows.keep("nobody", "k", 0) == 0
    assert windows.keep("tok", "elsewhere", 0) == 0
    assert windows.keep("tok", "k", 0) == 2  # nothing left: the token leaves the window
    assert windows.keep("tok", "k", 0) == 0
    assert windows.entries("k", SECOND, T + 1) == [(T, 4)]
    assert take1(windows, "tok", "k", 5, T + 2, limit=9, length=SECOND) == (True, [4])
    assert windows.used([("k", SECOND)], T + 2) == [9]
    assert windows.keep("other", "k", 1) == 3
    assert windows.used([("k", SECOND)], T + SECOND - 1) == [1 + 5]
    assert windows.used([("k", SECOND)], T + SECOND) == [5]  # each expires on its own time


def test_keep_all_keeps_in_each_window_evicting_first_where_a_length_is_given(
    windows: WindowStore,
) -> None:
    both = [WindowTake("a", SECOND, 9, 5), WindowTake("b", 2 * SECOND, 9, 4)]
    assert windows.take("tok", both, T) == (True, [0, 0])
    keeps = [WindowKeep("a", SECOND, 1), WindowKeep("b", None, 1), WindowKeep("c", None, 0)]
    assert windows.keep_all("tok", keeps, T + 1) == [4, 3, 0]
    assert windows.keep_all("tok", keeps, T + 1) == [0, 0, 0]  # asked again: nothing more
    assert windows.used([("a", SECOND), ("b", 2 * SECOND)], T + 1) == [1, 1]
    # At T + SECOND the entry in "a" has expired: evicted first, there is nothing to give back;
    # without a length it is still there to give back, as `keep` finds it.
    assert windows.keep_all("tok", [WindowKeep("a", SECOND, 0)], T + SECOND) == [0]
    assert windows.keep_all("tok", [WindowKeep("b", None, 0)], T + SECOND) == [1]
    assert windows.used([("a", SECOND), ("b", 2 * SECOND)], T + SECOND) == [0, 0]
    assert windows.keep_all("tok", [], T) == []


def test_keep_all_refuses_negative_units_before_keeping_any(windows: WindowStore) -> None:
    assert take1(windows, "tok", "a", 5, T, limit=9, length=SECOND) == (True, [0])
    with pytest.raises((ValueError, InvalidRequestError), match="units"):  # memory, Redis
        windows.keep_all("tok", [WindowKeep("a", None, 0), WindowKeep("b", None, -1)], T)
    assert windows.used([("a", SECOND)], T) == [5]


def test_a_partly_given_back_token_stays_recorded(windows: WindowStore) -> None:
    assert take1(windows, "tok", "k", 5, T, limit=5, length=SECOND) == (True, [0])
    assert windows.release("tok", "k", 4) == 4
    # A retried take under the token still does not take again.
    assert take1(windows, "tok", "k", 5, T + 1, limit=5, length=SECOND) == (True, [1])
    assert windows.entries("k", SECOND, T + 1) == [(T, 1)]


def test_units_stay_exact_up_to_64_bits(windows: WindowStore) -> None:
    top = 2**63 - 1  # the largest limit a plan allows; doubles cannot tell top - 1 from top
    assert take1(windows, "a", "k", top - 1, T, limit=top, length=SECOND) == (True, [0])
    assert take1(windows, "b", "k", 2, T, limit=top, length=SECOND) == (False, [top - 1])
    assert take1(windows, "b", "k", 1, T, limit=top, length=SECOND) == (True, [top - 1])
    assert take1(windows, "c", "k", 2**70, T, limit=top, length=SECOND) == (False, [top])
    assert windows.release("a", "k", 2**62 + 1) == 2**62 + 1
    assert windows.used([("k", SECOND)], T) == [top - 2**62 - 1]
    assert windows.release("a", "k", 2**80) == top - 1 - 2**62 - 1
    assert windows.entries("k", SECOND, T) == [(T, 1)]  # "a", given back whole, has left


# --- entries -------------------------------------------------------------------------------------


def test_entries_come_oldest_first_with_exact_times(windows: WindowStore) -> None:
    times = [T, T + 1, T + 1, T + MS - 1, T + MS, T + MS + 1, T + 2 * MS]
    for i, now in enumerate(times):
        before = i * (i + 1) // 2
        assert take1(windows, f"t{i}", "k", i + 1, now, limit=1000, length=SECOND) == (
            True,
            [before],
        )
    expected = [(now, i + 1) for i, now in enumerate(times)]
    assert windows.entries("k", SECOND, T + 2 * MS) == expected
    assert all(type(t) is int and type(u) is int for t, u in expected)
    # Eviction stops exactly between T + 1 and T + MS - 1.
    assert windows.entries("k", SECOND, T + 1 + SECOND) == expected[3:]
    assert windows.used([("k", SECOND)], T + 1 + SECOND) == [sum(range(4, 8))]


def test_entries_at_the_same_ns_keep_their_arrival_order(windows: WindowStore) -> None:
    for i in range(12):  # past 9 and 10: the arrival order must not sort like text
        assert take1(windows, f"t{11 - i}", "k", i + 1, T, limit=1000, length=SECOND)[0]
    assert windows.entries("k", SECOND, T) == [(T, i + 1) for i in range(12)]


def test_windows_of_different_keys_are_independent(windows: WindowStore) -> None:
    assert take1(windows, "tok", "a", 4, T, limit=4, length=SECOND) == (True, [0])
    assert take1(windows, "x", "a", 1, T, limit=4, length=SECOND) == (False, [4])
    # The same token in another key is a separate entry, limited on its own.
    assert take1(windows, "tok", "b", 4, T, limit=4, length=SECOND) == (True, [0])
    assert take1(windows, "y", "a:z", 2, T, limit=4, length=SECOND) == (True, [0])  # like a suffix
    assert windows.release("tok", "a", 4) == 4
    assert windows.used([("a", SECOND), ("b", SECOND), ("a:z", SECOND)], T) == [0, 4, 2]
    assert windows.entries("b", SECOND, T) == [(T, 4)]
    assert windows.used([], T) == []
    assert windows.take("tok", [], T) == (True, [])


def test_fresh_stores_are_independent(make_windows: MakeWindows) -> None:
    one, two = make_windows(), make_windows()
    assert take1(one, "tok", "k", 3, T, limit=3, length=SECOND) == (True, [0])
    assert two.used([("k", SECOND)], T) == [0]


# --- random operations against a reference ------------------------------------------------------


class Reference:
    """The contract as plain lists: per key, [time, units, token] in arrival order; an operation
    at `now` first drops the entries with time <= now - length (times never go back here)."""

    def __init__(self) -> None:
        self.logs: dict[str, list[list[Any]]] = {}

    def log(self, key: str, length: int, now: int) -> list[list[Any]]:
        log = self.logs.setdefault(key, [])
        log[:] = [e for e in log if e[0] > now - length]
        return log

    def used(self, keys: Sequence[tuple[str, int]], now: int) -> list[int]:
        return [sum(e[1] for e in self.log(k, length, now)) for k, length in keys]

    def take(self, token: str, takes: Sequence[WindowTake], now: int) -> tuple[bool, list[int]]:
        logs = [self.log(t.key, t.length_ns, now) for t in takes]
        before = [sum(e[1] for e in log) for log in logs]
        for log, t, used in zip(logs, takes, before, strict=True):
            if used + t.units > t.limit and not any(e[2] == token for e in log):
                return False, before
        for log, t in zip(logs, takes, strict=True):
            if t.units and not any(e[2] == token for e in log):
                log.append([now, t.units, token])
        return True, before

    def entries(self, key: str, length: int, now: int) -> list[tuple[int, int]]:
        return [(e[0], e[1]) for e in self.log(key, length, now)]

    def release(self, token: str, key: str, units: int) -> int:
        log = self.logs.get(key, [])
        for e in log:
            if e[2] == token:
                given = min(units, e[1])
                e[1] -= given
                if e[1] == 0:
                    log.remove(e)  # given back whole: the token leaves the window
                return given
        return 0

    def keep(self, token: str, key: str, units: int) -> int:
        held = [e[1] for e in self.logs.get(key, []) if e[2] == token]
        return self.release(token, key, max(0, held[0] - units)) if held else 0

    def keep_all(self, token: str, keeps: Sequence[WindowKeep], now: int) -> list[int]:
        for k in keeps:
            if k.length_ns is not None:
                self.log(k.key, k.length_ns, now)
        return [self.keep(token, k.key, k.units) for k in keeps]


KEYS = ("a", "b", "c")
TOKENS = ("t0", "t1", "t2", "t3", "x:y", "ü")
LENGTHS = (1, 7, MS - 1, MS, MS + 1, 2_500_000)
_advance = st.one_of(
    st.just(0), st.integers(1, 10), st.integers(MS - 10, MS + 10), st.integers(0, 3 * MS)
)


class WindowsAgainstReference(RuleBasedStateMachine):
    """A store under test, a `MemoryWindows` and the reference get the same operations; every
    answer must be the same from all three. Each key has one length and one limit."""

    def __init__(self, make_windows: MakeWindows) -> None:
        super().__init__()
        self.stores: list[WindowStore] = [make_windows(), MemoryWindows()]
        self.ref = Reference()
        self.length: dict[str, int] = {}
        self.limit: dict[str, int] = {}
        self.now = 0

    @initialize(
        start=st.integers(-MS, MS).map(lambda d: T + d),
        lengths=st.tuples(*(st.sampled_from(LENGTHS) for _ in KEYS)),
        limits=st.tuples(*(st.sampled_from((0, 1, 3, 6, 10, 20)) for _ in KEYS)),
    )
    def setup(self, start: int, lengths: tuple[int, ...], limits: tuple[int, ...]) -> None:
        self.now = start
        self.length = dict(zip(KEYS, lengths, strict=True))
        self.limit = dict(zip(KEYS, limits, strict=True))

    def same(self, call: str, *args: Any) -> Any:
        expected = getattr(self.ref, call)(*args)
        for store in self.stores:
            got = getattr(store, call)(*args)
            assert got == expected, f"{type(store).__name__}.{call}{args}: {got} != {expected}"
        return expected

    @rule(delta=_advance)
    def advance(self, delta: int) -> None:
        self.now += delta

    @rule(
        token=st.sampled_from(TOKENS),
        parts=st.lists(st.tuples(st.sampled_from(KEYS), st.integers(0, 5)), min_size=1, max_size=3),
    )
    def take(self, token: str, parts: list[tuple[str, int]]) -> None:
        takes = [WindowTake(k, self.length[k], self.limit[k], units) for k, units in parts]
        taken, before = self.same("take", token, takes, self.now)
        if not taken:  # then some window had no room for its take
            assert any(u + t.units > t.limit for u, t in zip(before, takes, strict=True))

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=3))
    def used(self, keys: list[str]) -> None:
        used = self.same("used", [(k, self.length[k]) for k in keys], self.now)
        for k, units in zip(keys, used, strict=True):
            assert window_within_limit(units, self.limit[k])  # M5

    @rule(key=st.sampled_from(KEYS))
    def entries(self, key: str) -> None:
        entries = self.same("entries", key, self.length[key], self.now)
        times = [t for t, _ in entries]
        assert times == sorted(times)
        assert all(self.now - self.length[key] < t <= self.now for t in times)

    @rule(data=st.data(), units=st.integers(0, 6))
    def release(self, data: st.DataObject, units: int) -> None:
        # Mostly a (token, key) the reference holds (possibly expired but not yet evicted).
        held = [(e[2], key) for key, log in self.ref.logs.items() for e in log]
        anything = st.tuples(st.sampled_from(TOKENS), st.sampled_from(KEYS))
        token, key = data.draw(st.sampled_from(held) | anything if held else anything)
        given = self.same("release", token, key, units)
        assert 0 <= given <= units

    @rule(data=st.data(), units=st.integers(0, 6))
    def keep(self, data: st.DataObject, units: int) -> None:
        held = [(e[2], key) for key, log in self.ref.logs.items() for e in log]
        anything = st.tuples(st.sampled_from(TOKENS), st.sampled_from(KEYS))
        token, key = data.draw(st.sampled_from(held) | anything if held else anything)
        self.same("keep", token, key, units)
        assert self.same("keep", token, key, units) == 0  # idempotent

    @rule(data=st.data(), evicts=st.lists(st.booleans(), min_size=1, max_size=3))
    def keep_all(self, data: st.DataObject, evicts: list[bool]) -> None:
        held = [e[2] for log in self.ref.logs.values() for e in log]
        token = data.draw(
            st.sampled_from(held) | st.sampled_from(TOKENS) if held else st.sampled_from(TOKENS)
        )
        keeps = [
            WindowKeep(key, self.length[key] if evict else None, data.draw(st.integers(0, 6)))
            for evict, key in zip(evicts, data.draw(st.permutations(KEYS)), strict=False)
        ]
        self.same("keep_all", token, keeps, self.now)
        assert self.same("keep_all", token, keeps, self.now) == [0] * len(keeps)  # idempotent

    @precondition(lambda self: bool(self.length))
    @invariant()
    def within_limits(self) -> None:
        """M5 on the reference, read without evicting (the stores were compared at each step)."""
        for key, log in self.ref.logs.items():
            counted = sum(e[1] for e in log if e[0] > self.now - self.length[key])
            assert window_within_limit(counted, self.limit[key])


EXAMPLES = {"memory": 200, "redis": 50}


def test_stores_agree_with_the_reference(
    make_windows: MakeWindows, request: pytest.FixtureRequest
) -> None:
    run_state_machine_as_test(
        lambda: WindowsAgainstReference(make_windows),
        settings=settings(max_examples=scaled(EXAMPLES[kind_of(request)]), stateful_step_count=30),
    )


# --- Redis only ----------------------------------------------------------------------------------


@pytest.fixture
def redis_windows() -> Any:
    """The RedisWindows class (redis-py missing: skipped, or failed under CI=true)."""
    require_redis_py()
    from ledger.metering.redis_windows import RedisWindows

    return RedisWindows


def test_two_clients_share_the_windows(redis_url: str, redis_windows: Any) -> None:
    prefix = fresh_prefix()
    one = redis_windows.from_url(redis_url, prefix=prefix)
    two = redis_windows.from_url(redis_url, prefix=prefix)
    other = redis_windows.from_url(redis_url, prefix=fresh_prefix())
    try:
        assert take1(one, "tok", "k", 3, T, limit=5, length=SECOND) == (True, [0])
        assert two.used([("k", SECOND)], T) == [3]
        assert two.entries("k", SECOND, T) == [(T, 3)]
        assert take1(two, "tok", "k", 3, T + 1, limit=5, length=SECOND) == (True, [3])  # retry
        assert take1(two, "more", "k", 3, T + 1, limit=5, length=SECOND) == (False, [3])
        assert two.release("tok", "k", 1) == 1
        assert one.used([("k", SECOND)], T + 1) == [2]
        assert other.used([("k", SECOND)], T + 1) == [0]  # another prefix: other windows
    finally:
        for store in (one, two, other):
            store.close()


@pytest.mark.parametrize("limits", [(50,), (30, 50)], ids=["one_window", "two_windows"])
def test_concurrent_takes_never_exceed_the_limit(
    redis_url: str, redis_windows: Any, limits: tuple[int, ...]
) -> None:
    """8 threads, each with its own client, race 200 one-unit takes (unique tokens) at the same
    instant: exactly min(limits) succeed, and every window counts exactly that many."""
    prefix, threads, per_thread = fresh_prefix(), 8, 25
    takes = [WindowTake(f"w{i}", SECOND, limit, 1) for i, limit in enumerate(limits)]
    stores = [redis_windows.from_url(redis_url, prefix=prefix) for _ in range(threads)]
    successes = [0] * threads
    start = threading.Barrier(threads)

    def run(n: int) -> None:
        start.wait()
        for i in range(per_thread):
            if stores[n].take(f"req-{n}-{i}", takes, T + i)[0]:
                successes[n] += 1

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    try:
        assert sum(successes) == min(limits)
        keys = [(t.key, SECOND) for t in takes]
        assert stores[0].used(keys, T + per_thread) == [min(limits)] * len(limits)
        assert len(stores[0].entries("w0", SECOND, T + per_thread)) == min(limits)
    finally:
        for store in stores:
            store.close()


def test_idle_keys_expire_and_are_never_shortened(redis_url: str, redis_windows: Any) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = fresh_prefix()
    w = redis_windows(client, prefix=prefix, ttl_slack_ms=0)
    try:
        assert take1(w, "long", "k", 1, T, limit=5, length=10 * SECOND)[0]
        assert take1(w, "short", "k", 1, T, limit=5, length=SECOND // 100)[0]
        # A shorter window on the same key does not cut the longer one's lifetime.
        ttls = [client.pttl(f"{prefix}w:k:{s}") for s in "zh"]
        assert all(9_000 < ttl <= 10_000 for ttl in ttls), ttls
        assert take1(w, "brief", "idle", 1, T, limit=5, length=50 * MS)[0]
        assert 0 < client.pttl(f"{prefix}w:idle:z") <= 50
        # Idle for longer than its length (plus no slack), the window's keys are gone.
        threading.Event().wait(0.3)
        assert client.exists(f"{prefix}w:idle:z", f"{prefix}w:idle:h") == 0
        assert w.used([("idle", 50 * MS)], T) == [0]
    finally:
        client.close()


def test_a_client_decoding_responses_works(redis_url: str, redis_windows: Any) -> None:
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    w = redis_windows(client, prefix=fresh_prefix())
    try:
        assert take1(w, "tok", "k", 5, T, limit=5, length=SECOND) == (True, [0])
        assert take1(w, "x", "k", 1, T, limit=5, length=SECOND) == (False, [5])
        assert w.entries("k", SECOND, T) == [(T, 5)]
        assert w.release("tok", "k", 7) == 5
    finally:
        client.close()


def test_keep_all_is_one_script_call(redis_url: str, redis_windows: Any) -> None:
    """A settlement gives back in every window of a decision with one round trip."""
    import redis

    w = redis_windows.from_url(redis_url, prefix=fresh_prefix())
    takes = [WindowTake(key, SECOND, 9, 3) for key in ("a", "b", "c")]
    assert w.take("tok", takes, T) == (True, [0, 0, 0])
    stats = redis.Redis.from_url(redis_url)

    def scripts_run() -> int:
        return int(stats.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))

    before = scripts_run()
    keeps = [WindowKeep("a", SECOND, 1), WindowKeep("b", None, 0), WindowKeep("c", SECOND, 3)]
    assert w.keep_all("tok", keeps, T + 1) == [2, 3, 0]
    assert scripts_run() == before + 1
    assert w.used([(t.key, SECOND) for t in takes], T + 1) == [1, 0, 3]


def test_replies_are_parsed_by_hiredis(redis_windows: Any) -> None:
    """redis-py's C reply parser is a dependency (`redis[hiredis]`): with the pure-Python one
    a decision on Redis windows costs about a tenth more (bench/RESULTS.md)."""
    import redis.connection

    assert redis.connection.DefaultParser.__name__ == "_HiredisParser"


def test_limits_beyond_64_bits_are_refused(redis_url: str, redis_windows: Any) -> None:
    w = redis_windows.from_url(redis_url, prefix=fresh_prefix())
    try:
        with pytest.raises(InvalidRequestError, match="limit"):
            take1(w, "tok", "k", 1, T, limit=2**63, length=SECOND)
        with pytest.raises(InvalidRequestError, match="units"):
            take1(w, "tok", "k", -1, T, limit=5, length=SECOND)
        with pytest.raises(InvalidRequestError, match="units"):
            w.release("tok", "k", -1)
        assert w.used([("k", SECOND)], T) == [0]  # nothing recorded by the refused calls
    finally:
        w.close()


def test_an_unreachable_server_raises_a_clear_error(redis_windows: Any) -> None:
    from ledger.metering.redis_windows import WindowStoreUnavailableError

    from .redis_server import free_port

    port = free_port()  # nothing listens there
    w = redis_windows.from_url(f"redis://user:s3cret@127.0.0.1:{port}/0")
    calls = [
        lambda: take1(w, "tok", "k", 1, T, limit=5, length=SECOND),
        lambda: w.used([("k", SECOND)], T),
        lambda: w.entries("k", SECOND, T),
        lambda: w.release("tok", "k", 1),
    ]
    for call in calls:
        with pytest.raises(WindowStoreUnavailableError) as caught:
            call()
        message = str(caught.value)
        assert f"127.0.0.1:{port}" in message
        assert "s3cret" not in message
        assert "retry" in message
        assert isinstance(caught.value, MeteringError)
    w.close()


# --- memory windows: idle logs are swept -------------------------------------------------------


def test_a_sweep_drops_only_the_logs_idle_since_the_previous_sweep() -> None:
    length, slack = 5 * SECOND, 60 * SECOND
    w = MemoryWindows(sweep_every=10**9, sweep_slack_ns=slack)
    take1(w, "a", "old", 1, T, limit=9, length=length)
    take1(w, "b", "newer", 1, T + 1, limit=9, length=length)
    take1(w, "c", "long", 1, T, limit=9, length=10 * length)
    take1(w, "d", "given back", 2, T, limit=9, length=length)
    assert w.release("d", "given back", 2) == 2  # whole: no entry left, but taken at T
    take1(w, "e", "grown", 1, T, limit=9, length=length)
    take1(w, "f", "grown", 1, T, limit=9, length=10 * length)  # idle after the longer length
    first = T + length + slack
    assert w.sweep(first) == 0  # "old" is idle, but no sweep came before: it is kept once
    assert w.sweep(first + 1) == 2  # idle at the previous sweep: "old" and "given back"
    assert sorted(w._logs) == ["grown", "long", "newer"]
    assert w.used([("newer", length), ("long", 10 * length)], T + length) == [1, 1]
    assert take1(w, "g", "newer", 1, first + 2, limit=9, length=length)[0]  # came back
    later = T + 10 * length + slack
    assert w.sweep(later) == 0  # "newer" was taken since; the others were not idle at first + 1
    assert w.sweep(later + 1) == 2  # "long" and "grown": idle at `later`
    assert sorted(w._logs) == ["newer"]


def test_a_sweep_behind_the_previous_one_drops_only_what_is_idle_at_its_own_time() -> None:
    w = MemoryWindows(sweep_every=10**9, sweep_slack_ns=0)
    take1(w, "a", "k", 1, T, limit=9, length=SECOND)
    w.sweep(T + 10 * SECOND)
    assert w.sweep(T + SECOND - 1) == 0  # a clock behind: "k" still counts there
    assert w.used([("k", SECOND)], T + SECOND - 1) == [1]


def test_a_take_sweeps_every_sweep_every_takes_or_every_log_count_if_more() -> None:
    w = MemoryWindows(sweep_every=3, sweep_slack_ns=0)
    take1(w, "a", "old", 1, T, limit=9, length=SECOND)
    take1(w, "b", "x", 1, T + SECOND, limit=9, length=SECOND)
    take1(w, "c", "x", 1, T + SECOND, limit=9, length=SECOND)  # the third take sweeps: keeps
    for token in "de":
        take1(w, token, "x", 1, T + SECOND, limit=9, length=SECOND)
    assert "old" in w._logs
    take1(w, "f", "x", 1, T + SECOND, limit=9, length=SECOND)  # the sixth: "old" was idle
    assert "old" not in w._logs and "x" in w._logs
    many = MemoryWindows(sweep_every=2, sweep_slack_ns=0)
    assert many.take("a", [WindowTake(f"k{i}", 10 * SECOND, 9, 1) for i in range(6)], T)[0]
    later = T + 20 * SECOND  # the six logs are idle from T + 10 s
    assert many.take("b", [WindowTake("k0", 10 * SECOND, 9, 1)], later)[0]  # sweeps: 6 left
    for i in range(5):  # 6 takes must pass before the next sweep
        assert many.take(f"c{i}", [WindowTake("k0", 10 * SECOND, 9, 1)], later)[0]
    assert len(many._logs) == 6
    assert many.take("d", [WindowTake("k0", 10 * SECOND, 9, 1)], later)[0]
    assert sorted(many._logs) == ["k0"]


def test_a_customer_who_comes_back_between_sweeps_keeps_their_logs() -> None:
    """Idle at every visit, but taken from between every two sweeps: never dropped, never made
    anew (new logs feed the garbage collector)."""
    w = MemoryWindows(sweep_every=10**9, sweep_slack_ns=0)
    take1(w, "t0", "k", 1, T, limit=9, length=SECOND)
    log = w._logs["k"]
    for visit in range(1, 6):
        now = T + visit * 10 * SECOND
        assert w.sweep(now) == 0
        assert take1(w, f"t{visit}", "k", 1, now, limit=9, length=SECOND) == (True, [0])
        assert w._logs["k"] is log


def test_swept_logs_serve_new_keys_emptied() -> None:
    w = MemoryWindows(sweep_every=10**9, sweep_slack_ns=0)
    assert take1(w, "t", "a0", 5, T, limit=9, length=SECOND)[0]
    assert w.release("t", "a0", 2) == 2  # part given back: the log holds a released count
    for i in range(1, 4):
        take1(w, f"a{i}", f"a{i}", 1, T, limit=9, length=SECOND)
    take1(w, "z", "z", 1, T + 10 * SECOND, limit=9, length=SECOND)
    old = [w._logs[f"a{i}"] for i in range(4)]
    w.sweep(T + 10 * SECOND)
    assert w.sweep(T + 10 * SECOND) == 4  # the "a" logs; "z" was taken after the first sweep
    assert len(w._spare) == 1  # at most as many as the logs left ("z")
    now = T + 11 * SECOND
    for i in range(4):
        take1(w, f"b{i}", f"b{i}", 1, now, limit=9, length=SECOND)
    reused = [i for i in range(4) if any(w._logs[f"b{i}"] is log for log in old)]
    assert reused == [0] and not w._spare  # "a0"'s log serves "b0"
    assert w.entries("b0", SECOND, now) == [(now, 1)]
    assert take1(w, "t", "b0", 8, now, limit=9, length=SECOND) == (True, [1])
    assert w.used([(f"b{i}", SECOND) for i in range(4)], now) == [9, 1, 1, 1]
    assert w.release("t", "b0", 9) == 8  # the token "t" of "a0" left nothing behind


def test_a_reused_log_is_idle_after_its_own_keys_length() -> None:
    w = MemoryWindows(sweep_every=10**9, sweep_slack_ns=0)
    take1(w, "a", "long", 1, T, limit=9, length=100 * SECOND)
    take1(w, "b", "kept", 1, T + 200 * SECOND, limit=9, length=SECOND)
    w.sweep(T + 200 * SECOND)
    assert w.sweep(T + 200 * SECOND) == 1 and len(w._spare) == 1
    take1(w, "c", "short", 1, T + 201 * SECOND, limit=9, length=SECOND)  # "long"'s log
    w.sweep(T + 210 * SECOND)
    assert w.sweep(T + 210 * SECOND) == 2  # "short" too: idle after 1 s, not 100 s


def test_spare_logs_are_at_most_as_many_as_the_logs_left() -> None:
    w = MemoryWindows(sweep_every=10**9, sweep_slack_ns=0)
    for i in range(8):
        take1(w, f"a{i}", f"a{i}", 1, T, limit=9, length=SECOND)
    for i in range(3):
        take1(w, f"b{i}", f"b{i}", 1, T + 10 * SECOND, limit=9, length=SECOND)
    w.sweep(T + 10 * SECOND)
    assert w.sweep(T + 10 * SECOND) == 8
    assert len(w._logs) == 3 and len(w._spare) == 3


_ops = st.lists(
    st.tuples(
        st.sampled_from(("take", "release", "used", "entries")),
        st.sampled_from(KEYS),
        st.sampled_from(TOKENS),
        st.integers(0, 4),
        st.one_of(st.just(0), st.integers(1, 3 * MS)),
    ),
    max_size=60,
)


@settings(max_examples=scaled(200))
@given(ops=_ops, lengths=st.tuples(*(st.sampled_from(LENGTHS) for _ in KEYS)))
@example(  # "a" holds an expired entry and a live one when a take on "b" sweeps
    ops=[
        ("take", "a", "t0", 1, 0),
        ("take", "a", "t1", 1, MS // 2),
        ("take", "b", "t2", 1, MS // 2),
        ("used", "a", "t0", 0, 0),
    ],
    lengths=(MS, MS, MS),
)
def test_sweeping_after_every_take_changes_no_count(
    ops: list[tuple[str, str, str, int, int]], lengths: tuple[int, ...]
) -> None:
    """Against windows never swept: the same takes succeed and the same units and entries
    count (what `release` returns for an expired entry may differ: it counts nothing)."""
    swept, kept = MemoryWindows(sweep_every=1, sweep_slack_ns=0), MemoryWindows()
    length = dict(zip(KEYS, lengths, strict=True))
    now = T
    for op, key, token, units, delta in ops:
        now += delta
        if op != "take":
            swept.sweep(now)  # a take sweeps first itself
        if op == "take":
            take = [WindowTake(key, length[key], 6, units)]
            assert swept.take(token, take, now) == kept.take(token, take, now)
        elif op == "release":
            swept.release(token, key, units)
            kept.release(token, key, units)
        elif op == "used":
            assert swept.used([(key, length[key])], now) == kept.used([(key, length[key])], now)
        else:
            assert swept.entries(key, length[key], now) == kept.entries(key, length[key], now)
    assert len(swept._logs) <= len(kept._logs)


def test_a_long_running_meter_keeps_a_log_per_live_window_not_per_period() -> None:
    """Ten days of hourly decisions on a daily allowance: the allowance's key names its day,
    and the sweep drops each day's log once nothing in it can count."""

    def run(windows: MemoryWindows) -> int:
        meter = make_meter(
            {"f": feature(allowance_layer(5, "day"), windows_layer(window("5h", "5h", 1000)))},
            {"f": 1},
        )
        meter.windows = windows
        customers = [f"c{i}" for i in range(20)]
        for c in customers:
            meter.add_customer(c, "pro", T0)
        for hour in range(240):
            for c in customers:
                assert meter.decide(c, "f", 1, f"{c}-{hour}", T0 + hour * HOUR).allowed
        return len(windows._logs)  # type: ignore[attr-defined]

    assert run(MemoryWindows(sweep_every=100)) <= 20 * (1 + 3)  # 5h, and up to three days
    assert run(MemoryWindows(sweep_every=10**9)) == 20 * (1 + 11)  # unswept: one a day (11 days)
