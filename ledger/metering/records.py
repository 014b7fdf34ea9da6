"""The rows of the usage and monetization datasets, and how decisions and completions are
written as JSON. Plain immutable records; money and units are integers."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from ledger.metering.decision import (
    Charge,
    Completion,
    Consulted,
    Decision,
    Part,
    Reason,
    Unblock,
)
from ledger.metering.ids import derive_id


class UsageEvent(NamedTuple):
    """What happened: `units` of `feature` used under `decision_id`, reported with `key`.
    (A NamedTuple, like `Monetization`: the audit builds one per row read.)"""

    id: int
    customer: str
    key: str
    feature: str
    units: int
    occurred_at: int
    decision_id: int
    received_at: int

    def body(self) -> tuple[object, ...]:
        """What must match when the same key is reported again."""
        return (self.feature, self.units, self.occurred_at, self.decision_id)

    def digest(self) -> int:
        """A 63-bit hash of every field, kept in the event's outbox entry while it waits, so
        that a row changed before it is settled is refused by settlement and named by the
        audit (nothing else binds an unsettled event)."""
        return derive_id("usage-report", *self)


@dataclass(frozen=True, slots=True)
class Rejection:
    """A usage report refused, kept for the audit: why, and the body as received (JSON)."""

    id: int
    customer: str
    key: str
    reason: str
    body: str
    at: int


class Monetization(NamedTuple):
    """What one layer's share of a usage event costs: `amount` = `units` * `price` micro-credits
    (0 for windows and allowance). Every transfer it causes carries its id in user_data."""

    id: int
    usage_id: int
    decision_id: int
    customer: str
    layer: str
    units: int
    price_version: int
    price: int
    amount: int
    account_id: int


# One encoder for every record: json.dumps with separators builds a new one per call.
_compact = json.JSONEncoder(separators=(",", ":")).encode


def decision_to_json(d: Decision) -> str:
    body = d._asdict()
    body["parts"] = [p._asdict() for p in d.parts]
    body["consulted"] = [c._asdict() for c in d.consulted]
    body["reasons"] = [asdict(r) for r in d.reasons]
    body["unblock"] = [asdict(u) for u in d.unblock]
    return _compact(body)


def decision_from_json(text: str) -> Decision:
    # Positional construction: settlement reads one decision per usage event.
    b: dict[str, Any] = json.loads(text)
    parts = [
        Part(p["layer"], p["units"], p["amount"], p["transfer_id"], p["account_id"])
        for p in b["parts"]
    ]
    return Decision(
        b["decision_id"],
        b["customer"],
        b["feature"],
        b["key"],
        b["units"],
        b["allowed"],
        b["now"],
        b["plan"],
        b["plan_version"],
        b["price_version"],
        b["price"],
        b["timeout"],
        tuple(parts),
        tuple([Consulted(c["layer"], c["room"], c["took"]) for c in b["consulted"]]),
        tuple([Reason(**r) for r in b["reasons"]]),
        b.get("retry_after"),
        tuple([Unblock(**u) for u in b["unblock"]]),
        b.get("timeout_override"),
    )


def completion_to_json(c: Completion) -> str:
    body = {
        "decision_id": c.decision_id,
        "actual_units": c.actual_units,
        "usage_id": c.usage_id,
        "charges": [
            {
                "layer": x.layer,
                "units": x.units,
                "amount": x.amount,
                "monetization_id": x.monetization_id,
                "account_id": x.account_id,
            }
            for x in c.charges
        ],
        "released_units": c.released_units,
        "released_amount": c.released_amount,
        "written_off": c.written_off,
        "transfer_ids": list(c.transfer_ids),
        "settled_at": c.settled_at,
    }
    return _compact(body)


def completion_from_json(text: str) -> Completion:
    body: dict[str, Any] = json.loads(text)
    body["charges"] = tuple(Charge(**x) for x in body["charges"])
    body["transfer_ids"] = tuple(body["transfer_ids"])
    return Completion(**body)
