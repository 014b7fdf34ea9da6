"""Outcomes of proof obligations and seeded bugs, as the prove command reports them."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """One obligation checked by one checker.

    Attributes:
        obligation: a stable dotted name, e.g. "L1.no_overdraft.create_transfer".
        checker: "z3", "crosshair" or "hypothesis".
        holds: True only on a definite pass (Z3 unsat of the negation, or a SAT sanity check
            that is sat); unknown and time-outs are False.
        seconds: wall time spent on it.
        detail: the counterexample or the reason for a failure; a short note on a pass.
        requirement: the spec ids it supports, e.g. ("L1",).
    """

    obligation: str
    checker: str
    holds: bool
    seconds: float
    detail: str = ""
    requirement: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Outcome:
        return cls(
            data["obligation"],
            data["checker"],
            data["holds"],
            data["seconds"],
            data["detail"],
            tuple(data["requirement"]),
        )


@dataclass(frozen=True, slots=True)
class MutantOutcome:
    """A seeded bug and the checkers that rejected it (a mutant must be rejected by at least one).

    Attributes:
        name: stable short name, e.g. "overdraft_guard_removed".
        description: what the bug is, in plain words.
        killed_by: the obligations (or tests) that failed on it; empty means it survived.
        seconds: wall time spent on it.
    """

    name: str
    description: str
    killed_by: tuple[str, ...]
    seconds: float

    @property
    def killed(self) -> bool:
        return bool(self.killed_by)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "killed": self.killed}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MutantOutcome:
        """`killed` is derived from `killed_by`; a report where they disagree was edited."""
        outcome = cls(data["name"], data["description"], tuple(data["killed_by"]), data["seconds"])
        if outcome.killed != data["killed"]:
            raise ValueError(f"mutant {outcome.name}: 'killed' disagrees with 'killed_by'")
        return outcome
