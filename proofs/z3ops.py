"""The kernel's `Ops` on Z3 terms, and symbolic kernel states and events.

`Z3Ops` maps `ite/and_/or_/not_/get/put` to `z3.If/And/Or/Not/Select/Store`, so the very kernel
functions that the reference ledger runs on Python values build the SMT terms the proofs reason
about. Literal Python bools (the kernel mixes them with terms, e.g. `failed_so_far = False` at the
start of a chain) are folded away instead of being wrapped, which keeps the terms small.

The builders take the kernel *module* as an argument, so a seeded mutant (a freshly loaded copy of
ledger/core/kernel.py) gets states and events of its own dataclasses.
"""

from __future__ import annotations

import dataclasses
from types import ModuleType
from typing import Any

import z3

from ledger.core import validate
from ledger.core.ops import TotalMap

TRANSFER_BOOL_FIELDS = frozenset(
    {
        "linked",
        "pending",
        "post_pending",
        "void_pending",
        "balancing_debit",
        "balancing_credit",
        "reserved_flags",
    }
)
ACCOUNT_BOOL_FIELDS = frozenset(
    {"linked", "debits_guard", "credits_guard", "history", "closed", "reserved_flags"}
)


def _literal(value: Any) -> bool | None:
    """The truth value of a literal condition (Python bool or Z3 true/false), else None."""
    if isinstance(value, bool):
        return value
    if z3.is_true(value):
        return True
    if z3.is_false(value):
        return False
    return None


class Z3Ops:
    """The Ops protocol on Z3 terms; Python bools are accepted wherever a condition is."""

    def ite(self, condition: Any, then: Any, otherwise: Any) -> Any:
        literal = _literal(condition)
        if literal is not None:
            return then if literal else otherwise
        if then is otherwise:  # both branches the same object: nothing to choose
            return then
        return z3.If(condition, then, otherwise)

    def and_(self, *conditions: Any) -> Any:
        terms = []
        for c in conditions:
            literal = _literal(c)
            if literal is False:
                return False
            if literal is None:
                terms.append(c)
        return _join(terms, z3.And, True)

    def or_(self, *conditions: Any) -> Any:
        terms = []
        for c in conditions:
            literal = _literal(c)
            if literal is True:
                return True
            if literal is None:
                terms.append(c)
        return _join(terms, z3.Or, False)

    def not_(self, condition: Any) -> Any:
        literal = _literal(condition)
        if literal is not None:
            return not literal
        return z3.Not(condition)

    def get(self, table: Any, key: Any) -> Any:
        return z3.Select(table, key)

    def put(self, table: Any, key: Any, value: Any) -> Any:
        return z3.Store(table, key, value)


def _join(terms: list[Any], combine: Any, empty: bool) -> Any:
    if not terms:
        return empty
    if len(terms) == 1:
        return terms[0]
    return combine(*terms)


Z3 = Z3Ops()


def as_bool(value: Any) -> Any:
    """A Z3 Bool for a term or a literal Python bool (solvers only take terms)."""
    return z3.BoolVal(value) if isinstance(value, bool) else value


# --- states -----------------------------------------------------------------------------------


def map_fields(kernel: ModuleType) -> tuple[str, ...]:
    """The kernel state's map fields (every field but `timestamp`)."""
    return tuple(kernel.MAP_FIELDS)


def symbolic_state(kernel: ModuleType, prefix: str) -> Any:
    """A fully symbolic `KernelState`: each map an SMT array over Int ids, `timestamp` an Int."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kernel.KernelState):
        name = f"{prefix}.{f.name}"
        if f.name == "timestamp":
            values[f.name] = z3.Int(name)
        elif f.name in kernel.BOOL_FIELDS:
            values[f.name] = z3.Array(name, z3.IntSort(), z3.BoolSort())
        else:
            values[f.name] = z3.Array(name, z3.IntSort(), z3.IntSort())
    return kernel.KernelState(**values)


def initial_state(kernel: ModuleType) -> Any:
    """The kernel's own `empty_state()`, as Z3 constant arrays (Init)."""
    concrete = kernel.empty_state()
    values: dict[str, Any] = {}
    for f in dataclasses.fields(kernel.KernelState):
        value = getattr(concrete, f.name)
        if isinstance(value, TotalMap):
            # A stored entry would need a Store on top of K; Init has none, so say so loudly.
            assert len(value) == 0, f"empty_state().{f.name} has entries"
            values[f.name] = z3.K(z3.IntSort(), value.default)
        else:
            assert isinstance(value, int), f"empty_state().{f.name} is {value!r}"
            values[f.name] = z3.IntVal(value)
    return kernel.KernelState(**values)


# --- events -----------------------------------------------------------------------------------


def symbolic_transfer(kernel: ModuleType, prefix: str) -> Any:
    """A fully symbolic `TransferEvent`: decoded flags are Bools, every other field an Int."""
    return _symbolic_event(kernel.TransferEvent, TRANSFER_BOOL_FIELDS, prefix)


def symbolic_account(kernel: ModuleType, prefix: str) -> Any:
    """A fully symbolic `AccountEvent`: decoded flags are Bools, every other field an Int."""
    return _symbolic_event(kernel.AccountEvent, ACCOUNT_BOOL_FIELDS, prefix)


def _symbolic_event(cls: Any, bool_fields: frozenset[str], prefix: str) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        name = f"{prefix}.{f.name}"
        values[f.name] = z3.Bool(name) if f.name in bool_fields else z3.Int(name)
    return cls(**values)


def transfer_wellformed(t: Any) -> list[Any]:
    """What `validate.check_batch` guarantees of a transfer before the kernel sees it: every
    integer field within its column's range (the flags integer is decoded into Bools)."""
    return _in_ranges(t, validate._TRANSFER_FIELDS)


def account_wellformed(a: Any) -> list[Any]:
    """What `validate.check_batch` guarantees of an account before the kernel sees it."""
    return _in_ranges(a, validate._ACCOUNT_FIELDS)


def _in_ranges(event: Any, fields: tuple[tuple[str, int], ...]) -> list[Any]:
    bounds = []
    for name, maximum in fields:
        if name == "flags":
            continue
        value = getattr(event, name)
        bounds += [value >= 0, value <= maximum]
    return bounds
