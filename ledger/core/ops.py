"""The operations interface the transition kernel is written over.

The kernel never uses Python's `if`, `and`, `or`, `not` or `in` on data; it calls these instead.
`ConcreteOps` runs them on ints, bools and immutable total maps (the reference ledger);
`proofs.z3ops.Z3Ops` runs the very same kernel on Z3 terms (the proofs). Maps are total: a key
never stored reads as the map's default, exactly like an SMT array built from a constant.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol


class Ops(Protocol):
    def ite(self, condition: Any, then: Any, otherwise: Any) -> Any: ...
    def and_(self, *conditions: Any) -> Any: ...
    def or_(self, *conditions: Any) -> Any: ...
    def not_(self, condition: Any) -> Any: ...
    def get(self, table: Any, key: Any) -> Any: ...
    def put(self, table: Any, key: Any, value: Any) -> Any: ...


class TotalMap(Mapping[int, Any]):
    """An immutable map that reads `default` for every key not stored.

    Entries equal to the default are never stored, so two maps are equal exactly when they
    agree on every key, as SMT arrays are (extensionality).
    """

    __slots__ = ("_default", "_entries", "_hash")

    def __init__(self, default: Any, entries: Mapping[int, Any] | None = None) -> None:
        self._default = default
        kept = {} if entries is None else {k: v for k, v in entries.items() if v != default}
        self._entries: dict[int, Any] = kept
        self._hash: int | None = None

    @property
    def default(self) -> Any:
        return self._default

    def __getitem__(self, key: int) -> Any:
        return self._entries.get(key, self._default)

    def __iter__(self) -> Iterator[int]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TotalMap):
            return NotImplemented
        return self._default == other._default and self._entries == other._entries

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash((self._default, frozenset(self._entries.items())))
        return self._hash

    def __repr__(self) -> str:
        return f"TotalMap({self._default!r}, {self._entries!r})"

    def set(self, key: int, value: Any) -> TotalMap:
        """A new map with `key` bound to `value`; this one is unchanged."""
        entries = dict(self._entries)
        if value == self._default:
            entries.pop(key, None)
        else:
            entries[key] = value
        result = TotalMap.__new__(TotalMap)
        result._default = self._default
        result._entries = entries
        result._hash = None
        return result


class ConcreteOps:
    """The kernel's operations on plain Python values."""

    def ite(self, condition: Any, then: Any, otherwise: Any) -> Any:
        assert isinstance(condition, bool), condition
        return then if condition else otherwise

    def and_(self, *conditions: Any) -> Any:
        return all(conditions)

    def or_(self, *conditions: Any) -> Any:
        return any(conditions)

    def not_(self, condition: Any) -> Any:
        assert isinstance(condition, bool), condition
        return not condition

    def get(self, table: Any, key: Any) -> Any:
        return table[key]

    def put(self, table: Any, key: Any, value: Any) -> Any:
        return table.set(key, value)


CONCRETE = ConcreteOps()
