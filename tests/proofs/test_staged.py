"""`specs.staged`: the M3 decision predicate staged into plain Python gives the same answer as
`specs.metering.allocation_ok` on every input, also on shapes and values no allocation would
produce; a stager that wrote the wrong operator would be caught; a predicate that branched on a
value cannot be staged."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from specs import metering as spec
from specs import staged
from specs.staged import SourceLogic, Symbol, stage_allocation

values = st.one_of(st.integers(-3, 12), st.integers(-(2**70), 2**70))
layers = st.lists(values, max_size=6)


@given(request=values, rooms=layers, allowed=st.booleans(), parts=layers)
def test_staged_equals_the_spec(
    request: int, rooms: list[int], allowed: bool, parts: list[int]
) -> None:
    want = spec.allocation_ok(request, rooms, allowed, parts)
    assert staged.allocation_ok(request, rooms, allowed, parts) is want
    assert staged.allocation_ok(request, tuple(rooms), allowed, tuple(parts)) is want


def mismatches(logic: Any) -> list[tuple[Any, ...]]:
    """Every small input (up to two rooms and two parts, values -1..2) on which the predicate
    staged with `logic` disagrees with the spec."""
    found = []
    small = range(-1, 3)
    for n_rooms, n_parts in itertools.product(range(3), repeat=2):
        check = stage_allocation(spec.allocation_ok, n_rooms, n_parts, logic)
        for rooms, parts in itertools.product(
            itertools.product(small, repeat=n_rooms), itertools.product(small, repeat=n_parts)
        ):
            for request, allowed in itertools.product(range(-1, 4), (False, True)):
                if check(request, rooms, allowed, parts) != spec.allocation_ok(
                    request, rooms, allowed, parts
                ):
                    found.append((request, rooms, allowed, parts))
    return found


def test_staged_equals_the_spec_on_every_small_input() -> None:
    assert mismatches(SourceLogic()) == []


class OrWrittenAsAnd(SourceLogic):
    def or_(self, *conditions: Any) -> Any:
        return SourceLogic.and_(self, *conditions)


class NotDropped(SourceLogic):
    def not_(self, condition: Any) -> Any:
        return condition


class EmptyAndIsFalse(SourceLogic):
    def and_(self, *conditions: Any) -> Any:
        return Symbol("False") if not conditions else SourceLogic.and_(self, *conditions)


@pytest.mark.parametrize("logic", [OrWrittenAsAnd(), NotDropped(), EmptyAndIsFalse()])
def test_a_wrong_stager_is_caught(logic: SourceLogic) -> None:
    assert mismatches(logic), f"{type(logic).__name__} staged the same predicate"


def test_a_predicate_that_branches_on_a_value_cannot_be_staged() -> None:
    def branches(
        request: Any, rooms: Sequence[Any], allowed: Any, parts: Sequence[Any], ops: Any
    ) -> Any:
        if rooms[0] == parts[0]:  # Python's `if` on a symbol: the answer would depend on values
            return ops.and_(True)
        return ops.and_(allowed)

    with pytest.raises(TypeError, match="no truth value"):
        stage_allocation(branches, 1, 1)


def test_only_symbols_bools_and_ints_are_staged() -> None:
    with pytest.raises(TypeError, match="cannot stage"):
        stage_allocation(lambda r, rooms, a, parts, ops: ops.and_(r <= 1.5), 0, 0)


def test_one_compiled_function_per_shape() -> None:
    staged.allocation_ok(3, (1, 2), True, (1, 2))
    first = staged._STAGED[(2, 2)]
    staged.allocation_ok(5, (9, 9), True, (5, 0))
    assert staged._STAGED[(2, 2)] is first
