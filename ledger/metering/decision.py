"""What `decide` and `complete` return. Plain immutable records: they are stored, compared on an
idempotent replay, and sent over the wire. The records a decision is made of are NamedTuples,
the cheapest immutable records to build on the hot path."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple


class Part(NamedTuple):
    """Units served by one layer. Money layers also give the micro-credits held and the pending
    transfer that holds them (its id derived from the decision and the layer)."""

    layer: str
    units: int
    amount: int = 0
    transfer_id: int = 0
    account_id: int = 0


@dataclass(frozen=True, slots=True)
class Reason:
    """Why a layer fell short: `window_exhausted`, `exceeds_window_limit`,
    `allowance_exhausted`, `insufficient_funds` or `pool_cap_reached`."""

    code: str
    layer: str
    message: str


@dataclass(frozen=True, slots=True)
class Unblock:
    """What would let the request through now: `action` (e.g. `buy_credits`) and how much."""

    action: str
    amount: int
    message: str


class Consulted(NamedTuple):
    """One layer as the decision saw it: the units it could serve and the units it served."""

    layer: str
    room: int
    took: int


class Decision(NamedTuple):
    """One definitive answer to a request. `cost` is the most the customer may be charged (the
    money parts' sum); `retry_after` is in ns from `now` (None: waiting alone never suffices)."""

    decision_id: int
    customer: str
    feature: str
    key: str
    units: int
    allowed: bool
    now: int
    plan: str
    plan_version: int
    price_version: int
    price: int
    timeout: int
    parts: tuple[Part, ...] = ()
    consulted: tuple[Consulted, ...] = ()
    reasons: tuple[Reason, ...] = ()
    retry_after: int | None = None
    unblock: tuple[Unblock, ...] = ()
    timeout_override: int | None = None  # the timeout the caller gave (None: the plan's)

    @property
    def cost(self) -> int:
        return sum(p.amount for p in self.parts)

    def explain(self) -> str:
        """A line per layer consulted, then why it was blocked (if it was)."""
        lines = [
            f"{c.layer}: could serve {c.room} unit(s), served {c.took}" for c in self.consulted
        ]
        verdict = "allowed" if self.allowed else "blocked"
        lines.append(f"{verdict}: {self.units} unit(s) of {self.feature} for {self.customer}")
        lines += [f"  {r.code} ({r.layer}): {r.message}" for r in self.reasons]
        lines += [f"  to continue now: {u.message}" for u in self.unblock]
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Charge:
    """Money taken for one layer at completion: `amount` micro-credits from `account_id`, tied
    to monetization event `monetization_id` (write-offs use layer "write_off")."""

    layer: str
    units: int
    amount: int
    monetization_id: int
    account_id: int


@dataclass(frozen=True, slots=True)
class Completion:
    """The settled outcome of a decision: what was charged where, what was written off, and
    what was given back (units to windows and allowance, micro-credits voided)."""

    decision_id: int
    actual_units: int
    usage_id: int = 0
    charges: tuple[Charge, ...] = ()
    released_units: int = 0
    released_amount: int = 0
    written_off: int = 0
    transfer_ids: tuple[int, ...] = field(default=())
    settled_at: int = 0  # ns the settlement ran at; 0 when recorded before it was kept

    @property
    def charged(self) -> int:
        return sum(c.amount for c in self.charges if c.layer != "write_off")


Packed = tuple[Any, ...]

_HEAD = 18  # 14 scalar fields, then how many parts, consulted layers, reasons and unblocks


def pack_decision(d: Decision) -> Packed:
    """`d` as one flat tuple of numbers, strings and None. A NamedTuple or a dataclass stays
    tracked by the garbage collector for life, and so does a tuple holding one; a flat tuple
    of atoms is untracked at its first collection, so kept decisions cost the collector
    nothing."""
    flat: list[Any] = [*d[:12], d.retry_after, d.timeout_override]
    flat += (len(d.parts), len(d.consulted), len(d.reasons), len(d.unblock))
    for p in d.parts:
        flat += p
    for c in d.consulted:
        flat += c
    for r in d.reasons:
        flat += (r.code, r.layer, r.message)
    for u in d.unblock:
        flat += (u.action, u.amount, u.message)
    return tuple(flat)


def unpack_decision(t: Packed) -> Decision:
    n_parts, n_consulted, n_reasons, n_unblock = t[14:_HEAD]
    at = _HEAD
    parts = tuple(Part(*t[i : i + 5]) for i in range(at, at + 5 * n_parts, 5))
    at += 5 * n_parts
    consulted = tuple(Consulted(*t[i : i + 3]) for i in range(at, at + 3 * n_consulted, 3))
    at += 3 * n_consulted
    reasons = tuple(Reason(*t[i : i + 3]) for i in range(at, at + 3 * n_reasons, 3))
    at += 3 * n_reasons
    unblock = tuple(Unblock(*t[i : i + 3]) for i in range(at, at + 3 * n_unblock, 3))
    assert at + 3 * n_unblock == len(t)
    return Decision._make((*t[:12], parts, consulted, reasons, t[12], unblock, t[13]))
