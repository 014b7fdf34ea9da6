"""The allocation at the heart of the waterfall: split a request across layers in order.

Written once over `Ops` (no Python branching on the data) so that the proof in
proofs/obligations_allocation.py runs on this very code: parts never exceed a layer's room, a
later layer is drawn only when every earlier one is full, and the parts sum to the request
(`allocate`, all or nothing) or to what the layers have (`fill`, what completion uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger.core.ops import CONCRETE, Ops


def fill(ops: Ops, request: Any, rooms: Sequence[Any]) -> list[Any]:
    """Take from each layer in order as much as is still asked, up to its room."""
    parts: list[Any] = []
    left = request
    for room in rooms:
        take = ops.ite(left < room, left, room)
        parts.append(take)
        left = left - take
    return parts


def allocate(ops: Ops, request: Any, rooms: Sequence[Any]) -> tuple[Any, list[Any]]:
    """(allowed, parts): the whole request across the layers in order, or nothing at all."""
    total: Any = 0
    for room in rooms:
        total = total + room
    allowed = request <= total
    return allowed, [ops.ite(allowed, part, 0) for part in fill(ops, request, rooms)]


def allocate_units(request: int, rooms: Sequence[int]) -> tuple[bool, list[int]]:
    """`allocate` on integers (rooms must be non-negative)."""
    assert request > 0 and all(room >= 0 for room in rooms)
    allowed, parts = allocate(CONCRETE, request, rooms)
    return bool(allowed), [int(p) for p in parts]


def fill_units(request: int, rooms: Sequence[int]) -> list[int]:
    """`fill` on integers: what each layer gives towards `request` (the rest is uncovered)."""
    assert request >= 0 and all(room >= 0 for room in rooms)
    return [int(p) for p in fill(CONCRETE, request, rooms)]
