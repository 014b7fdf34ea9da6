"""Inductiveness of the ledger invariant (L1, L2, L7 and their supporting conjuncts).

For every conjunct C of `obligations_base.invariant`:
- `init.C`: the kernel's `empty_state()` satisfies C (at an arbitrary witness);
- `C.<step>` for each step kind: Inv(pre) and the step imply C(post) at an arbitrary witness.
Plus one frame obligation per step kind, `frame.<step>`: every map changes only at the indices
the step declares as touched. The frame is the premise of the store-lemma instances the sum
obligations assume, so a step that writes elsewhere fails here even if the sums look right.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import z3

from proofs.obligations_base import (
    INDEX_W,
    WITNESS,
    Conjunct,
    Obligation,
    Step,
    guard_sanity,
    init_lemmas,
    step_sanity,
    step_watch,
    witness_watch,
)


def init_obligations(init: Any, conjuncts: Sequence[Conjunct]) -> list[Obligation]:
    hypotheses = tuple(init_lemmas(init))
    return [
        Obligation(
            name=f"init.{c.name}",
            requirement=c.requirement,
            hypotheses=hypotheses,
            goal=c.holds(init, WITNESS[c.index]),
            sanity=(("hypotheses", z3.BoolVal(True)),),
            watch=tuple(witness_watch(c.index, init, init)),
        )
        for c in conjuncts
    ]


def preservation_obligations(step: Step, conjuncts: Sequence[Conjunct]) -> list[Obligation]:
    """Inv(pre) and Step(pre, post) imply each conjunct of Inv(post), one obligation each."""
    common = step_watch(step)
    return [
        Obligation(
            name=f"{c.name}.{step.kind}",
            requirement=c.requirement,
            hypotheses=tuple(step.hypotheses),
            goal=c.holds(step.post, WITNESS[c.index]),
            sanity=step_sanity(step) + guard_sanity(step, c.name),
            watch=tuple(common + witness_watch(c.index, step.pre, step.post)),
        )
        for c in conjuncts
    ]


def frame_obligation(step: Step, map_fields: Sequence[str]) -> Obligation:
    """Every map equals its pre-state value at any index the step does not declare. (In the
    counterexample only the maps that changed at the witness are listed: the "?" labels.)"""
    w = INDEX_W
    parts = []
    for name in map_fields:
        before, after = getattr(step.pre, name), getattr(step.post, name)
        elsewhere = z3.And(*[w != i for i in step.touched.get(name, [])])
        parts.append(z3.Implies(elsewhere, after[w] == before[w]))
    watch = [("w.index", w)] + [
        (f"?{name}[w] pre->post", (getattr(step.pre, name)[w], getattr(step.post, name)[w]))
        for name in map_fields
    ]
    return Obligation(
        name=f"frame.{step.kind}",
        requirement=("L2", "L3", "L5"),
        hypotheses=tuple(step.assumptions),
        goal=z3.And(*parts),
        sanity=step_sanity(step),
        watch=tuple(step_watch(step) + watch),
    )
