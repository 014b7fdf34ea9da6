"""The M3 decision predicate staged into plain Python, for checking many decisions at once.

`specs.metering.allocation_ok` takes an `ops` so that one statement serves ints and Z3 terms.
On ints it builds a dozen small tuples and calls per decision; the auditor checks one decision
per row. Here the same function is evaluated once on symbols (as the proofs evaluate it on Z3
terms), which yields one Python expression per shape (number of rooms, number of parts); that
expression is compiled once and applied to every decision of that shape. The rule is still the
one in `specs/metering.py`: only its evaluation is staged.

A symbol has no truth value, so a predicate whose control flow depended on a value rather than
on the shape would fail to stage (TypeError) instead of staging wrongly; an operation the
symbols do not support fails the same way.

Stdlib-only, like the rest of specs/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from specs.metering import Logic
from specs.metering import allocation_ok as _allocation_ok

AllocationPredicate = Callable[[Any, Sequence[Any], Any, Sequence[Any], Logic], Any]
AllocationCheck = Callable[[int, Sequence[int], bool, Sequence[int]], bool]


class Symbol:
    """A named value inside a Python expression: comparing or adding symbols writes source."""

    __slots__ = ("source",)

    def __init__(self, source: str) -> None:
        self.source = source

    def __bool__(self) -> bool:
        raise TypeError(f"{self.source} has no truth value while staging: branch with ops")

    def __add__(self, other: object) -> Symbol:
        return _binary(self, "+", other)

    def __radd__(self, other: object) -> Symbol:
        return _binary(other, "+", self)

    def __le__(self, other: object) -> Symbol:
        return _binary(self, "<=", other)

    def __ge__(self, other: object) -> Symbol:
        return _binary(self, ">=", other)

    def __eq__(self, other: object) -> Symbol:  # type: ignore[override]
        return _binary(self, "==", other)

    __hash__ = None  # type: ignore[assignment]


def source(value: object) -> str:
    """`value` as Python source: a symbol's text, or the literal of a bool or an int."""
    if isinstance(value, Symbol):
        return value.source
    if type(value) in (bool, int):
        return repr(value)
    raise TypeError(f"cannot stage {value!r}: only symbols, bools and ints")


def _binary(left: object, operator: str, right: object) -> Symbol:
    return Symbol(f"({source(left)} {operator} {source(right)})")


def _joined(word: str, conditions: tuple[Any, ...], empty: str) -> Symbol:
    if not conditions:
        return Symbol(empty)
    return Symbol("(" + f" {word} ".join(source(c) for c in conditions) + ")")


class SourceLogic:
    """`Logic` that writes Python: `and_` of nothing is True and `or_` of nothing is False, as
    `all` and `any` give on `PlainLogic`. Python's `and`/`or` stop early; the operands are
    side-effect-free comparisons, so the value is the same."""

    def ite(self, condition: Any, then: Any, otherwise: Any) -> Any:
        return Symbol(f"({source(then)} if {source(condition)} else {source(otherwise)})")

    def and_(self, *conditions: Any) -> Any:
        return _joined("and", conditions, "True")

    def or_(self, *conditions: Any) -> Any:
        return _joined("or", conditions, "False")

    def not_(self, condition: Any) -> Any:
        return Symbol(f"(not {source(condition)})")


def stage_allocation(
    predicate: AllocationPredicate, rooms: int, parts: int, logic: Logic | None = None
) -> AllocationCheck:
    """`predicate(request, rooms, allowed, parts)` for `rooms` rooms and `parts` parts, as one
    compiled function returning a bool."""
    expression = predicate(
        Symbol("request"),
        [Symbol(f"rooms[{i}]") for i in range(rooms)],
        Symbol("allowed"),
        [Symbol(f"parts[{i}]") for i in range(parts)],
        logic or SourceLogic(),
    )
    text = f"lambda request, rooms, allowed, parts: bool({source(expression)})"
    name = f"<staged {getattr(predicate, '__name__', 'predicate')} {rooms}/{parts}>"
    check: AllocationCheck = eval(compile(text, name, "eval"), {"__builtins__": {"bool": bool}})
    return check


_STAGED: dict[tuple[int, int], AllocationCheck] = {}


def allocation_ok(request: int, rooms: Sequence[int], allowed: bool, parts: Sequence[int]) -> bool:
    """`specs.metering.allocation_ok` on ints, staged once per shape."""
    shape = (len(rooms), len(parts))
    check = _STAGED.get(shape)
    if check is None:
        check = _STAGED[shape] = stage_allocation(_allocation_ok, *shape)
    return check(request, rooms, allowed, parts)
