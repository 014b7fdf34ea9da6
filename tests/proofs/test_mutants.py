"""Every seeded bug is rejected by the Z3 obligations, and no mutant can silently be a no-op."""

from __future__ import annotations

import sys

import pytest

from ledger.core import kernel
from proofs import mutants
from proofs.mutants import MUTANTS, Mutant, MutantError
from proofs.report import MutantOutcome

NAMES = [m.name for m in MUTANTS]
BY_NAME = {m.name: m for m in MUTANTS}
_results: dict[str, MutantOutcome] = {}


def outcome(name: str) -> MutantOutcome:
    """Each mutant is run once per session, whichever test asks first."""
    if name not in _results:
        _results[name] = mutants.run_one(BY_NAME[name])
    return _results[name]


def test_the_list_is_long_and_names_are_unique() -> None:
    assert len(MUTANTS) >= 12
    assert len(set(NAMES)) == len(NAMES)
    for m in MUTANTS:
        assert m.description and m.file in (mutants.KERNEL, mutants.SPEC)
        assert m.original != m.replacement


@pytest.mark.parametrize("name", NAMES)
def test_original_text_occurs_exactly_once(name: str) -> None:
    assert mutants.occurrences(BY_NAME[name]) == 1


@pytest.mark.parametrize("name", NAMES)
def test_mutant_is_killed(name: str) -> None:
    result = outcome(name)
    assert result.killed, f"{name} survived every Z3 obligation: {result.description}"


def test_the_over_restrictive_guard_is_killed_only_by_the_functional_spec() -> None:
    # Safety invariants hold for a ledger that refuses too much; only "accepted exactly when"
    # catches it. If this starts failing because a safety obligation also kills it, good news,
    # but check that the mutant still means what its name says.
    killers = outcome("guard_over_restrictive").killed_by
    assert killers and all(k.startswith("spec.") for k in killers)


def test_a_mutant_that_does_not_apply_is_refused() -> None:
    ghost = Mutant(
        "ghost", "does not apply", mutants.KERNEL, "this text is not in the kernel", "anything"
    )
    with pytest.raises(MutantError):
        mutants.load(ghost)


def test_loading_a_mutant_leaves_the_real_modules_alone() -> None:
    before = kernel.create_transfer
    module = mutants.load(BY_NAME["overdraft_guard_removed"])
    assert module.create_transfer is not before
    assert kernel.create_transfer is before
    assert not [name for name in sys.modules if name.startswith("_mutant_")]
    assert mutants.occurrences(BY_NAME["overdraft_guard_removed"]) == 1  # the file is untouched
