"""M3 waterfall order, proved of `ledger.metering.allocate` itself, for 1 to LAYERS_MAX layers.

`allocate` and `fill` are written once over `Ops`; here they are called with `Z3Ops` on a
symbolic request and symbolic rooms (unbounded Z3 Ints), so the terms proved about are built by
the very code the meter runs on Python ints. For every layer count n in 1..LAYERS_MAX:

- `M3.allocate.<property>.<n>_layers`, hypotheses request > 0 and every room >= 0:
  - `parts_within_rooms`: 0 <= part i <= room i (specs.metering.parts_within_rooms);
  - `waterfall_order`: a part > 0 only when every earlier part equals its room
    (specs.metering.waterfall_order);
  - `all_or_nothing`: allowed exactly when request <= sum(rooms); allowed => the parts sum to the
    request; refused => every part is 0 (specs.metering.allocation_complete).
- `M3.fill.<property>.<n>_layers`, hypotheses request >= 0 and every room >= 0:
  `parts_within_rooms`, `waterfall_order`, and `sums_to_covered`: the parts sum to
  min(request, sum(rooms)) (specs.metering.fill_complete).

Each goal is the spec predicate evaluated on the Z3 terms (the same function the tests evaluate
on ints). As for the kernel obligations, the negated goal must be unsat within the time-out and
each sanity formula sat with the hypotheses: the hypotheses alone, an allowed (covered) and a
refused (uncovered) request, and, from two layers on, a request that spills into the last layer,
so the waterfall is really exercised.

Trusted base: `Z3Ops` means what `ConcreteOps` means (If on Int terms versus Python's
conditional); Python ints and Z3 Ints are both unbounded; z3-solver is sound. Nothing else: no
lemma, no quantifier, no bound on the integers.

Not proved here: more than LAYERS_MAX layers (the loop is unrolled once per layer; a plan has one
room per layer kind, but every live grant is a room of its own, so a customer with many grants
goes beyond it: tests/proofs/test_allocation.py checks those on random inputs); that the meter
computes the rooms right; M5 (`specs.metering.window_within_limit` is stated for the window
tests and the auditor; no obligation here proves it).
"""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType
from typing import Any

import z3

from proofs.obligations_base import Obligation
from proofs.z3ops import Z3, as_bool

LAYERS_MAX = 8
"""The largest number of layers proved (every count from 1 up to it)."""

REQUIREMENT = ("M3",)


def _default_modules(
    allocate_module: ModuleType | None, spec_module: ModuleType | None
) -> tuple[ModuleType, ModuleType]:
    from ledger.metering import allocate
    from specs import metering

    return allocate_module or allocate, spec_module or metering


def allocation_obligations(
    allocate_module: ModuleType | None = None,
    spec_module: ModuleType | None = None,
    layers_max: int = LAYERS_MAX,
) -> list[Obligation]:
    """Every M3 obligation for 1..layers_max layers, from the given allocate and spec modules
    (default: ledger.metering.allocate and specs.metering; a seeded mutant passes its own)."""
    allocate, spec = _default_modules(allocate_module, spec_module)
    found: list[Obligation] = []
    for n in range(1, layers_max + 1):
        found += allocate_obligations(allocate, spec, n)
        found += fill_obligations(allocate, spec, n)
    return found


def symbolic_rooms(n: int) -> list[Any]:
    return [z3.Int(f"room[{i}]") for i in range(n)]


def _watch(request: Any, rooms: Sequence[Any], parts: Sequence[Any]) -> list[tuple[str, Any]]:
    watch: list[tuple[str, Any]] = [("request", request)]
    watch += [(f"room[{i}]", room) for i, room in enumerate(rooms)]
    watch += [(f"part[{i}]", part) for i, part in enumerate(parts)]
    return watch


def _spills(request: Any, rooms: Sequence[Any], parts: Sequence[Any]) -> list[tuple[str, Any]]:
    """From two layers on: the request is more than the first layer has, and the last layer
    gives something (every earlier one is then full, if the waterfall is right)."""
    if len(rooms) < 2:
        return []
    return [("spills into the last layer", z3.And(request > rooms[0], as_bool(parts[-1] > 0)))]


def allocate_obligations(allocate: ModuleType, spec: ModuleType, n: int) -> list[Obligation]:
    """(a), (b), (c) of M3 for `allocate` over n layers."""
    request, rooms = z3.Int("request"), symbolic_rooms(n)
    allowed, parts = allocate.allocate(Z3, request, rooms)
    allowed = as_bool(allowed)
    hypotheses = (request > 0, *[room >= 0 for room in rooms])
    sanity = (
        ("hypotheses", z3.BoolVal(True)),
        ("allowed", allowed),
        ("refused", z3.Not(allowed)),
        *_spills(request, rooms, parts),
    )
    watch = (("allowed", allowed), *_watch(request, rooms, parts))
    goals = (
        ("parts_within_rooms", spec.parts_within_rooms(rooms, parts, Z3)),
        ("waterfall_order", spec.waterfall_order(rooms, parts, Z3)),
        ("all_or_nothing", spec.allocation_complete(request, rooms, allowed, parts, Z3)),
    )
    return [
        Obligation(
            f"M3.allocate.{name}.{n}_layers",
            REQUIREMENT,
            hypotheses,
            as_bool(goal),
            sanity,
            watch,
        )
        for name, goal in goals
    ]


def fill_obligations(allocate: ModuleType, spec: ModuleType, n: int) -> list[Obligation]:
    """(a), (b) of M3 and "sums to min(request, sum of rooms)" for `fill` over n layers."""
    request, rooms = z3.Int("request"), symbolic_rooms(n)
    parts = allocate.fill(Z3, request, rooms)
    covered = as_bool(spec.allocation_allowed(request, rooms))
    hypotheses = (request >= 0, *[room >= 0 for room in rooms])
    sanity = (
        ("hypotheses", z3.BoolVal(True)),
        ("covered", covered),
        ("not covered", z3.Not(covered)),
        *_spills(request, rooms, parts),
    )
    goals = (
        ("parts_within_rooms", spec.parts_within_rooms(rooms, parts, Z3)),
        ("waterfall_order", spec.waterfall_order(rooms, parts, Z3)),
        ("sums_to_covered", spec.fill_complete(request, rooms, parts, Z3)),
    )
    return [
        Obligation(
            f"M3.fill.{name}.{n}_layers",
            REQUIREMENT,
            hypotheses,
            as_bool(goal),
            sanity,
            tuple(_watch(request, rooms, parts)),
        )
        for name, goal in goals
    ]
