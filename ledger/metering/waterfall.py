"""The pure part of a decision: rooms per layer, refusal reasons, `retry_after` and `unblock`.

No I/O and no clock: the shell (`meter.Meter`) reads windows and balances, calls these, and
writes what they decided. Units count in windows and allowances; money layers hold micro-credits
and serve `available // price` whole units.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.metering.decision import Reason, Unblock


@dataclass(frozen=True, slots=True)
class WindowView:
    """One window as a decision sees it (`weight` units counted per unit of the feature)."""

    name: str
    key: str
    length_ns: int
    limit: int
    weight: int
    used: int

    @property
    def room(self) -> int:
        return max(0, self.limit - self.used) // self.weight


@dataclass(frozen=True, slots=True)
class AllowanceView:
    key: str
    amount: int
    used: int
    period_start: int
    period_end: int

    @property
    def room(self) -> int:
        return max(0, self.amount - self.used)


@dataclass(frozen=True, slots=True)
class MoneyView:
    """A money sub-layer: a grant, the credits, the pool or the overage room."""

    layer: str
    account_id: int
    available: int
    price: int
    expires_at: int | None = None  # grants only: serves decisions with now < expires_at

    @property
    def room(self) -> int:
        return max(0, self.available) // self.price


def windows_room(windows: Sequence[WindowView]) -> int:
    return min(w.room for w in windows)


def refusal_reasons(
    units: int,
    windows: Sequence[WindowView],
    allowance: AllowanceView | None,
    money: Sequence[MoneyView],
    money_layers: Sequence[str],
) -> list[Reason]:
    """One reason for every layer that fell short (on a refusal, every layer did)."""
    reasons = [_window_reason(units, w) for w in windows if w.room < units]
    if allowance is not None:
        reasons.append(
            Reason(
                "allowance_exhausted",
                "allowance",
                f"{allowance.used} of {allowance.amount} units used this period; "
                f"resets at {allowance.period_end}",
            )
        )
    for kind in money_layers:
        reasons.append(_money_reason(kind, [m for m in money if money_kind(m.layer) == kind]))
    return reasons


def money_kind(layer: str) -> str:
    """The plan layer a money slot belongs to ("grant:x" to grants, "overage" to pool)."""
    return "grants" if layer.startswith("grant:") else "pool" if layer == "overage" else layer


def _window_reason(units: int, w: WindowView) -> Reason:
    if units * w.weight > w.limit:
        return Reason(
            "exceeds_window_limit",
            f"windows:{w.name}",
            f"the request counts {units * w.weight} units, more than the window's "
            f"limit of {w.limit}",
        )
    return Reason(
        "window_exhausted",
        f"windows:{w.name}",
        f"{w.used} of {w.limit} units used in the last {w.length_ns // 1_000_000_000} s",
    )


def _money_reason(kind: str, views: Sequence[MoneyView]) -> Reason:
    available = sum(max(0, v.available) for v in views)
    if kind == "pool" and any(v.layer == "overage" for v in views):
        return Reason(
            "pool_cap_reached",
            "pool",
            f"the organisation's pool and overage cap leave {available} micro-credits",
        )
    if not views:
        what = {"grants": "no grant applies", "pool": "no organisation pool"}.get(kind, "none")
        return Reason("insufficient_funds", kind, what)
    return Reason("insufficient_funds", kind, f"{available} micro-credits available")


def credits_to_buy(units: int, rooms: Sequence[int], credits: MoneyView | None) -> Unblock | None:
    """The least purchase that lets the request through now, if the plan has credits."""
    if credits is None:
        return None
    shortfall = units - sum(rooms)
    needed = (credits.room + shortfall) * credits.price - max(0, credits.available)
    return Unblock(
        "buy_credits", needed, f"buy at least {needed} micro-credits of purchased credits"
    )


def retry_after(
    now: int,
    units: int,
    windows: Sequence[tuple[WindowView, Sequence[tuple[int, int]]]],
    allowance: AllowanceView | None,
    money: Sequence[MoneyView],
) -> int | None:
    """Ns from `now` until the windows and allowance alone would let `units` through with the
    money layers as they are (grants lapse at their expiry); None when waiting never suffices.

    Free room only grows with time and money only shrinks, so the answer is `now` or the first
    instant some window entry expires or the allowance resets; past the last such instant the
    free layers are as empty as they get."""
    instants = {
        t + w.length_ns for w, entries in windows for t, _ in entries if t + w.length_ns > now
    }
    if allowance is not None:
        instants.add(allowance.period_end)
    for at in sorted(instants):
        if _fits_at(at, units, windows, allowance, money):
            return at - now
    return None


def _fits_at(
    at: int,
    units: int,
    windows: Sequence[tuple[WindowView, Sequence[tuple[int, int]]]],
    allowance: AllowanceView | None,
    money: Sequence[MoneyView],
) -> bool:
    room = 0
    if windows:
        room += min(
            max(0, w.limit - sum(u for t, u in entries if t > at - w.length_ns)) // w.weight
            for w, entries in windows
        )
    if allowance is not None:
        room += allowance.amount if at >= allowance.period_end else allowance.room
    room += sum(m.room for m in money if m.expires_at is None or at < m.expires_at)
    return room >= units
