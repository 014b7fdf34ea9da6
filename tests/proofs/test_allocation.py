"""M3 waterfall order: `ledger.metering.allocate` against `specs.metering`, on ints and on Z3.

- On random inputs (any number of layers, also beyond the 8 the Z3 proofs cover), the Python
  functions meet every M3 predicate.
- The predicates determine the split: on small inputs, the only parts that satisfy them are the
  ones the code returns (so a spec that holds is not one that anything would satisfy).
- The Z3 terms the proofs reason about compute what Python computes: the symbolic `allocate` and
  `fill`, with the symbols replaced by random values, simplify to the Python results; and each
  predicate means the same on Z3 terms as on ints, also on parts no allocation would produce.
- The M3 obligations exist for every layer count 1..8 and hold.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from functools import cache
from typing import Any

import pytest
import z3
from hypothesis import given
from hypothesis import strategies as st

from ledger.core.limits import AMOUNT_MAX
from ledger.metering.allocate import allocate, allocate_units, fill, fill_units
from proofs import z3proofs
from proofs.obligations_allocation import LAYERS_MAX, symbolic_rooms
from proofs.z3ops import Z3
from specs import metering as spec

units = st.one_of(st.integers(0, 12), st.integers(0, AMOUNT_MAX))
rooms_of_any_length = st.lists(units, max_size=12)
proved_layer_counts = st.integers(1, LAYERS_MAX)


# --- the Python functions meet M3 -------------------------------------------------------------


@given(request=units.filter(lambda u: u > 0), rooms=rooms_of_any_length)
def test_allocate_meets_m3(request: int, rooms: list[int]) -> None:
    allowed, parts = allocate_units(request, rooms)
    assert isinstance(allowed, bool) and all(type(p) is int for p in parts)
    assert spec.parts_within_rooms(rooms, parts)
    assert spec.waterfall_order(rooms, parts)
    assert spec.allocation_complete(request, rooms, allowed, parts)
    assert spec.allocation_ok(request, rooms, allowed, parts)
    assert allowed == (request <= sum(rooms))


@given(request=units, rooms=rooms_of_any_length)
def test_fill_meets_m3(request: int, rooms: list[int]) -> None:
    parts = fill_units(request, rooms)
    assert spec.fill_ok(request, rooms, parts)
    assert sum(parts) == min(request, sum(rooms))
    allowed, allocated = allocate_units(request, rooms) if request > 0 else (False, [])
    if allowed:
        assert allocated == parts  # a decision is the fill of a request the layers cover


def test_the_predicates_determine_the_split() -> None:
    """On every small case, the parts (within the rooms) that satisfy M3 are exactly the code's
    result: M3 admits neither a more cautious nor a more generous split."""
    for n in range(4):
        for rooms in itertools.product(range(4), repeat=n):
            candidates = list(itertools.product(*[range(room + 1) for room in rooms]))
            for request in range(0, 3 * n + 3):
                filled = [list(p) for p in candidates if spec.fill_ok(request, rooms, p)]
                assert filled == [fill_units(request, rooms)], (request, rooms)
                if request == 0:
                    continue
                decided = [
                    (allowed, list(p))
                    for allowed in (False, True)
                    for p in candidates
                    if spec.allocation_ok(request, rooms, allowed, p)
                ]
                assert decided == [allocate_units(request, rooms)], (request, rooms)


def test_the_predicates_reject_wrong_splits() -> None:
    rooms = (3, 2, 4)
    assert not spec.parts_within_rooms(rooms, (4, 0, 0))  # above a room
    assert not spec.parts_within_rooms(rooms, (3, -1, 1))  # negative
    assert not spec.parts_within_rooms(rooms, (3, 2))  # a layer missing
    assert not spec.waterfall_order(rooms, (2, 1, 0))  # second drawn, first not full
    assert not spec.waterfall_order(rooms, (0, 0, 4))  # last layer first
    assert spec.waterfall_order(rooms, (3, 1, 0))
    assert not spec.allocation_complete(5, rooms, True, (3, 1, 0))  # short of the request
    assert not spec.allocation_complete(10, rooms, False, (3, 2, 4))  # refused yet taken
    assert not spec.allocation_complete(9, rooms, False, (0, 0, 0))  # covered yet refused
    assert not spec.allocation_complete(10, rooms, True, (3, 2, 4))  # not covered yet allowed
    assert spec.allocation_complete(10, rooms, False, (0, 0, 0))
    assert not spec.fill_complete(10, rooms, (3, 2, 3))
    assert spec.fill_complete(10, rooms, (3, 2, 4))
    assert spec.window_within_limit(5, 5) and spec.window_within_limit(0, 5)
    assert not spec.window_within_limit(6, 5) and not spec.window_within_limit(-1, 5)


# --- the Z3 terms compute what Python computes ----------------------------------------------------

REQUEST = z3.Int("request")


@cache
def symbolic(n: int) -> tuple[list[Any], Any, list[Any], list[Any]]:
    """rooms, allowed, allocate's parts and fill's parts on Z3 terms (as the proofs build them)."""
    rooms = symbolic_rooms(n)
    allowed, allocated = allocate(Z3, REQUEST, rooms)
    return rooms, allowed, allocated, fill(Z3, REQUEST, rooms)


def evaluate(term: Any, values: Sequence[tuple[Any, int | bool]]) -> Any:
    """`term` with each (symbol, value) substituted, as a Python bool or int."""
    if isinstance(term, (bool, int)):
        return term
    pairs = [(s, z3.BoolVal(v) if isinstance(v, bool) else z3.IntVal(v)) for s, v in values]
    value = z3.simplify(z3.substitute(term, *pairs))
    if z3.is_bool(value):
        assert z3.is_true(value) or z3.is_false(value), value
        return z3.is_true(value)
    return value.as_long()


def at(request: int, symbols: Sequence[Any], values: Sequence[int]) -> list[tuple[Any, int]]:
    return [(REQUEST, request), *zip(symbols, values, strict=True)]


@st.composite
def cases(draw: st.DrawFn, request_min: int) -> tuple[int, list[int]]:
    n = draw(proved_layer_counts)
    request = draw(units.filter(lambda u: u >= request_min))
    return request, draw(st.lists(units, min_size=n, max_size=n))


@given(case=cases(request_min=1))
def test_z3_allocate_computes_what_python_computes(case: tuple[int, list[int]]) -> None:
    request, values = case
    rooms, allowed, allocated, _ = symbolic(len(values))
    expected_allowed, expected_parts = allocate_units(request, values)
    where = at(request, rooms, values)
    assert evaluate(allowed, where) == expected_allowed
    assert [evaluate(p, where) for p in allocated] == expected_parts


@given(case=cases(request_min=0))
def test_z3_fill_computes_what_python_computes(case: tuple[int, list[int]]) -> None:
    request, values = case
    rooms, _, _, filled = symbolic(len(values))
    where = at(request, rooms, values)
    assert [evaluate(p, where) for p in filled] == fill_units(request, values)


small = st.integers(-3, 12)


@given(
    n=proved_layer_counts,
    data=st.data(),
    request=small,
    allowed=st.booleans(),
    used=small,
    limit=small,
)
def test_predicates_mean_the_same_on_z3_terms(
    n: int, data: st.DataObject, request: int, allowed: bool, used: int, limit: int
) -> None:
    """Each predicate on Z3 variables, evaluated at arbitrary values (parts that no allocation
    would give included), equals the predicate on the values themselves."""
    room_values = data.draw(st.lists(small, min_size=n, max_size=n))
    part_values = data.draw(st.lists(small, min_size=n, max_size=n))
    rooms = symbolic_rooms(n)
    parts = [z3.Int(f"part[{i}]") for i in range(n)]
    allowed_term, used_term, limit_term = z3.Bool("allowed"), z3.Int("used"), z3.Int("limit")
    where: list[tuple[Any, int | bool]] = [
        *at(request, [*rooms, *parts], [*room_values, *part_values]),
        (allowed_term, allowed),
        (used_term, used),
        (limit_term, limit),
    ]
    pairs = (
        (
            spec.parts_within_rooms(rooms, parts, Z3),
            spec.parts_within_rooms(room_values, part_values),
        ),
        (spec.waterfall_order(rooms, parts, Z3), spec.waterfall_order(room_values, part_values)),
        (
            spec.allocation_complete(REQUEST, rooms, allowed_term, parts, Z3),
            spec.allocation_complete(request, room_values, allowed, part_values),
        ),
        (
            spec.fill_complete(REQUEST, rooms, parts, Z3),
            spec.fill_complete(request, room_values, part_values),
        ),
        (
            spec.window_within_limit(used_term, limit_term, Z3),
            spec.window_within_limit(used, limit),
        ),
    )
    for on_z3, on_ints in pairs:
        assert evaluate(on_z3, where) == on_ints


# --- the obligations ------------------------------------------------------------------------------

PROPERTIES = {
    "allocate": ("parts_within_rooms", "waterfall_order", "all_or_nothing"),
    "fill": ("parts_within_rooms", "waterfall_order", "sums_to_covered"),
}


def test_every_layer_count_and_property_has_an_obligation() -> None:
    found = {o.name: o for o in z3proofs.obligations(families=("allocation",))}
    expected = {
        f"M3.{function}.{prop}.{n}_layers"
        for function, props in PROPERTIES.items()
        for prop in props
        for n in range(1, LAYERS_MAX + 1)
    }
    assert set(found) == expected
    assert LAYERS_MAX == 8
    for name, o in found.items():
        labels = [label for label, _ in o.sanity]
        assert o.requirement == ("M3",)
        assert labels[0] == "hypotheses"
        assert {"allowed", "refused"} <= set(labels) or {"covered", "not covered"} <= set(labels)
        if not name.endswith(".1_layers"):
            assert "spills into the last layer" in labels, name
    kernel_only = z3proofs.obligations(families=("kernel",))
    assert not [o for o in kernel_only if o.name.startswith("M3.")]


def test_the_allocation_obligations_hold() -> None:
    outcomes = z3proofs.run(families=("allocation",))
    assert len(outcomes) == 2 * 3 * LAYERS_MAX
    failed = [f"{o.obligation}: {o.detail}" for o in outcomes if not o.holds]
    assert failed == []


def test_unknown_family_is_refused() -> None:
    with pytest.raises(ValueError, match="allocations"):
        z3proofs.obligations(families=("allocations",))
