"""Every seeded bug is rejected by the Z3 obligations, and no mutant can silently be a no-op.

The allocation mutants (ledger/metering/allocate.py, specs/metering.py) are rejected by the M3
obligations of proofs/obligations_allocation.py."""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest

from ledger.core import kernel
from proofs import mutants
from proofs.mutants import MUTANTS, Mutant, MutantError
from proofs.report import MutantOutcome

NAMES = [m.name for m in MUTANTS]
BY_NAME = {m.name: m for m in MUTANTS}


@pytest.fixture
def killers(seeded: dict[str, MutantOutcome]) -> Callable[[str], tuple[str, ...]]:
    """The obligations that rejected a seeded bug in the session's `tollgate prove --mutants`."""
    return lambda name: seeded[name].killed_by


def test_the_list_is_long_and_names_are_unique() -> None:
    assert len(MUTANTS) >= 12
    assert len(set(NAMES)) == len(NAMES)
    for m in MUTANTS:
        assert m.description and m.file in mutants.FAMILY
        assert m.original != m.replacement
    allocation = [m for m in MUTANTS if m.file in (mutants.ALLOCATE, mutants.METERING_SPEC)]
    assert len([m for m in allocation if m.file == mutants.ALLOCATE]) >= 4


@pytest.mark.parametrize("name", NAMES)
def test_original_text_occurs_exactly_once(name: str) -> None:
    assert mutants.occurrences(BY_NAME[name]) == 1


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_mutant_is_killed(seeded: dict[str, MutantOutcome], name: str) -> None:
    result = seeded[name]
    assert result.killed, f"{name} survived every Z3 obligation: {result.description}"


@pytest.mark.slow
def test_the_over_restrictive_guard_is_killed_only_by_the_functional_spec(
    killers: Callable[[str], tuple[str, ...]],
) -> None:
    # Safety invariants hold for a ledger that refuses too much; only "accepted exactly when"
    # catches it. If this starts failing because a safety obligation also kills it, good news,
    # but check that the mutant still means what its name says.
    found = killers("guard_over_restrictive")
    assert found and all(k.startswith("spec.") for k in found)


ALLOCATION_NAMES = [m.name for m in MUTANTS if mutants.FAMILY[m.file] == "allocation"]


@pytest.mark.slow
@pytest.mark.parametrize("name", ALLOCATION_NAMES)
def test_allocation_mutant_is_rejected_by_an_m3_obligation(
    killers: Callable[[str], tuple[str, ...]], name: str
) -> None:
    found = killers(name)
    assert found and all(k.startswith("M3.") for k in found), found


@pytest.mark.slow
def test_drawing_layers_out_of_order_is_killed_only_by_waterfall_order(
    killers: Callable[[str], tuple[str, ...]],
) -> None:
    # Every part within its room and the parts summing to the request: only M3 (b) sees that
    # the credits were spent while the allowance still had room.
    found = killers("later_layer_drawn_first")
    assert found and all(".waterfall_order." in k for k in found)
    assert {k.removeprefix("M3.allocate.waterfall_order.") for k in found} == {
        f"{n}_layers" for n in range(2, 9)
    }


@pytest.mark.slow
def test_refusing_an_exact_fit_is_killed_only_by_all_or_nothing(
    killers: Callable[[str], tuple[str, ...]],
) -> None:
    # An over-restrictive allocation keeps every safety property; only "allowed exactly when
    # the layers cover the request" rejects it.
    found = killers("allocation_exact_fit_refused")
    assert found and all(k.startswith("M3.allocate.all_or_nothing.") for k in found)


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
