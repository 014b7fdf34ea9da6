"""The pure part of completing a decision: which units are kept and which released.

The price is locked at decision time. When the actual is below the estimate, the difference is
released from the last layers first (so money is voided before window room is returned). What a
hold can no longer post (it expired) joins the excess, which goes through the waterfall again at
completion time; what no layer covers is written off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.core.flags import TransferFlags
from ledger.core.types import Transfer
from ledger.metering import accounts as acc
from ledger.metering.accounts import Code, TransferCode
from ledger.metering.decision import Charge, Completion, Decision, Part
from ledger.metering.ids import derive_id
from ledger.metering.waterfall import MoneyView

_POST = int(TransferFlags.POST_PENDING)
_VOID = int(TransferFlags.VOID_PENDING)


def kept_units(parts: Sequence[Part], actual: int) -> list[int]:
    """Units each part keeps when `actual` units were used (releasing from the last part)."""
    release = max(0, sum(p.units for p in parts) - actual)
    kept: list[int] = []
    for part in reversed(parts):
        give = min(release, part.units)
        kept.append(part.units - give)
        release -= give
    kept.reverse()
    assert sum(kept) == min(actual, sum(p.units for p in parts))
    return kept


def excess_units(parts: Sequence[Part], actual: int) -> int:
    return max(0, actual - sum(p.units for p in parts))


def monetization_id(decision_id: int, layer: str) -> int:
    """The monetization event of one layer of one decision; every transfer it causes names it."""
    return derive_id("monetization", decision_id, layer)


class _Ids(dict[str, int]):
    """Monetization ids of one decision's layers, derived once each."""

    def __init__(self, decision_id: int) -> None:
        super().__init__()
        self.decision_id = decision_id

    def __missing__(self, layer: str) -> int:
        self[layer] = value = monetization_id(self.decision_id, layer)
        return value


class Book:
    """Collects a completion's ledger events and charges before they are applied as one chain."""

    def __init__(self, decision: Decision) -> None:
        self.d = decision
        self.events: list[Transfer] = []
        self.free_left: dict[str, int] = {}  # free layer -> units its part keeps (some unused)
        self._charges: dict[str, list[int]] = {}  # layer -> [units, amount, account]
        self.released_units = 0
        self.released_amount = 0
        self.written_off = 0
        self.ids = _Ids(decision.decision_id)
        self.excess_takes: list[Any] = []  # window takes of the excess, released on failure

    def free_release(self, part: Part, units: int) -> None:
        if units:
            self.free_left[part.layer] = part.units - units
            self.released_units += units

    def free_kept(self, layer: str, units: int) -> None:
        """Units served free (windows, allowance): monetized at 0 so the units reconcile (M6)."""
        if units:
            self._charge(layer, units, 0, free=True)

    def resolve(self, part: Part, keep: int) -> None:
        """Post what is kept of a live hold (the ledger releases the rest) or void it."""
        d, mid = self.d, self.ids[part.layer]
        flags = _POST if keep else _VOID
        self.events.append(
            Transfer(
                id=derive_id("post" if keep else "void", d.decision_id, part.layer),
                pending_id=part.transfer_id,
                amount=keep * d.price,
                user_data=mid,
                flags=flags,
            )
        )
        if keep:
            self._charge(part.layer, keep, part.account_id)
        self.released_units += part.units - keep
        self.released_amount += (part.units - keep) * d.price

    def excess(self, parts: dict[str, int], money: Sequence[MoneyView], excess: int) -> None:
        """Charge the excess from the money layers that cover it; write off the rest."""
        d = self.d
        for m in money:
            units = parts.get(m.layer, 0)
            if units:
                self.events.append(
                    self._transfer("charge", m.layer, m.account_id, units, TransferCode.CHARGE)
                )
                self._charge(m.layer, units, m.account_id)
        uncovered = excess - sum(parts.values())
        if uncovered:
            write_off = acc.platform_account(Code.WRITE_OFF)
            self.events.append(
                self._transfer(
                    "write_off", "write_off", write_off, uncovered, TransferCode.WRITE_OFF
                )
            )
            self._charge("write_off", uncovered, write_off)
            self.written_off = uncovered * d.price

    def _transfer(
        self, kind: str, layer: str, debit: int, units: int, code: TransferCode
    ) -> Transfer:
        d = self.d
        return Transfer(
            id=derive_id(kind, d.decision_id, layer),
            debit_account_id=debit,
            credit_account_id=acc.platform_account(Code.REVENUE),
            amount=units * d.price,
            ledger=acc.LEDGER,
            code=int(code),
            user_data=self.ids[layer],
        )

    def _charge(self, layer: str, units: int, account_id: int, *, free: bool = False) -> None:
        entry = self._charges.setdefault(layer, [0, 0, account_id])
        entry[0] += units
        entry[1] += 0 if free else units * self.d.price

    def completion(self, actual: int, usage_id: int = 0, settled_at: int = 0) -> Completion:
        charges = tuple(
            Charge(layer, u, amount, self.ids[layer], account)
            for layer, (u, amount, account) in self._charges.items()
        )
        assert sum(c.units for c in charges) == actual  # M6: every used unit is monetized once
        return Completion(
            decision_id=self.d.decision_id,
            actual_units=actual,
            usage_id=usage_id,
            charges=charges,
            released_units=self.released_units,
            released_amount=self.released_amount,
            written_off=self.written_off,
            transfer_ids=tuple(e.id for e in self.events),
            settled_at=settled_at,
        )
