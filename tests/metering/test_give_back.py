"""A settlement gives back the window and allowance units its completion did not use before it
commits, in one call and idempotently (`WindowStore.keep_all`): no crash after the commit can
leave them taken, and a settlement that fails to commit and runs again gives back nothing twice.
With memory windows and with Redis windows."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ledger.metering import Meter, plan_from_data, price_book_from_data
from ledger.metering.windows import WindowStore
from ledger.store.base import Store
from ledger.store.sqlite import SqliteStore

from .fixtures import (
    CREDITS,
    HOUR,
    MINUTE,
    T0,
    allowance_layer,
    book_data,
    feature,
    plan_data,
    window,
    windows_layer,
)

PLAN = feature(windows_layer(window("5h", "5h", 100)), allowance_layer(50, "day"), CREDITS)


def meter_on(store: Store, windows: WindowStore) -> Meter:
    meter = Meter(store, windows)
    meter.publish_plan(plan_from_data(plan_data({"f": PLAN})))
    meter.publish_prices(price_book_from_data(book_data({"f": 2})))
    meter.add_customer("ann", "pro", T0)
    meter.purchase("ann", 10**6, "p", T0)
    return meter


def counts(meter: Meter, now: int) -> list[int]:
    """Units counted in the 5-hour window and in the day's allowance."""
    day = f"ann|f|allowance|{T0 - 12 * HOUR}"  # T0 is noon: the day began 12 hours before
    return meter.windows.used([("ann|f|5h", 5 * HOUR), (day, 24 * HOUR)], now)


class Died(BaseException):
    """The process ends here (nothing after this line runs)."""


def on_settlement(meter: Meter, *, inside: bool, effect: BaseException) -> Callable[[], None]:
    """Make the settlement's transaction raise `effect`: `inside` it, once its work is done (the
    commit then fails), or right after it committed. Returns the undo."""
    original_transact, original_record = meter.store.transact, meter.tables.record_settlements
    settling: list[bool] = []

    def record(*args: Any) -> None:
        original_record(*args)
        settling.append(True)

    def transact(now: int, build: Any) -> Any:
        def built(view: Any) -> Any:
            events, then = build(view)
            if then is None:
                return events, then

            def then_and_fail(results: Any, cur: Any) -> None:
                then(results, cur)
                if inside and settling:
                    raise effect

            return events, then_and_fail

        results = original_transact(now, built)
        if not inside and settling:
            raise effect
        return results

    meter.tables.record_settlements = record  # type: ignore[method-assign,assignment]
    meter.store.transact = transact  # type: ignore[method-assign]

    def undo() -> None:
        meter.tables.record_settlements = original_record  # type: ignore[method-assign]
        meter.store.transact = original_transact  # type: ignore[method-assign]

    return undo


def test_a_crash_right_after_the_commit_leaves_nothing_unused_taken(
    store: Store, windows: WindowStore
) -> None:
    meter = meter_on(store, windows)
    d = meter.decide("ann", "f", 130, "d", T0)  # windows 100, allowance 30
    assert [(p.layer, p.units) for p in d.parts] == [("windows", 100), ("allowance", 30)]
    undo = on_settlement(meter, inside=False, effect=Died())
    with pytest.raises(Died):
        meter.complete(d.decision_id, 70, T0 + MINUTE)
    undo()
    assert meter.completion(d.decision_id) is not None  # committed
    assert counts(meter, T0 + MINUTE) == [70, 0]  # 30 window units and the allowance given back


def test_a_settlement_that_fails_to_commit_gives_back_nothing_twice(
    tmp_path: Path, windows: WindowStore
) -> None:
    """On SQLite (the memory store cannot roll a transaction back)."""
    with SqliteStore(tmp_path / "m.db", synchronous="NORMAL") as store:
        given_back_once(meter_on(store, windows))


def given_back_once(meter: Meter) -> None:
    d = meter.decide("ann", "f", 130, "d", T0)
    undo = on_settlement(meter, inside=True, effect=OSError("disk I/O error at commit"))
    with pytest.raises(OSError, match="commit"):
        meter.complete(d.decision_id, 70, T0 + MINUTE)
    undo()
    assert meter.completion(d.decision_id) is None  # rolled back
    assert counts(meter, T0 + MINUTE) == [70, 0]  # already given back, before the commit
    done = meter.complete(d.decision_id, 70, T0 + 2 * MINUTE)
    assert done.actual_units == 70
    assert counts(meter, T0 + 2 * MINUTE) == [70, 0]  # not 40: nothing given back twice


def test_an_excess_taken_by_a_settlement_killed_before_its_commit_is_split_afresh(
    tmp_path: Path, windows: WindowStore
) -> None:
    """Shared windows outlive a process killed between an excess's take and the commit (its
    `finally` never runs): the retry must not count that take as used room and charge credits
    for units the windows still hold for it."""
    with SqliteStore(tmp_path / "m.db", synchronous="NORMAL") as store:
        meter = meter_on(store, windows)
        d = meter.decide("ann", "f", 90, "d", T0)  # windows 90
        undo = on_settlement(meter, inside=True, effect=Died())
        meter.release_excess = lambda *args: None  # type: ignore[method-assign]
        with pytest.raises(Died):
            meter.complete(d.decision_id, 130, T0 + MINUTE)  # excess 40: windows 10, allowance 30
        undo()
        assert meter.completion(d.decision_id) is None  # rolled back
        assert counts(meter, T0 + MINUTE) == [100, 30]  # the dead attempt's excess, still taken
        restarted = Meter(store, windows)
        done = restarted.complete(d.decision_id, 130, T0 + 2 * MINUTE)
    charged = {c.layer: c.units for c in done.charges}
    assert charged == {"windows": 100, "allowance": 30}  # no credits for units already taken
    assert counts(restarted, T0 + 2 * MINUTE) == [100, 30]


class Counted:
    """A window store that counts the calls made to it."""

    def __init__(self, inner: WindowStore) -> None:
        self.inner, self.calls = inner, Counter[str]()

    def __getattr__(self, name: str) -> Any:
        self.calls[name] += 1
        return getattr(self.inner, name)


def test_a_settlement_gives_back_in_every_window_and_allowance_with_one_call(
    store: Store, windows: WindowStore
) -> None:
    """One round trip on Redis, however many windows the plan has; no window is read first."""
    counted = Counted(windows)
    meter = meter_on(store, counted)  # type: ignore[arg-type]
    d = meter.decide("ann", "f", 130, "d", T0)  # windows 100, allowance 30
    counted.calls.clear()
    meter.complete(d.decision_id, 60, T0 + MINUTE)
    assert counted.calls == {"keep_all": 1}
    assert counts(meter, T0 + MINUTE) == [60, 0]
