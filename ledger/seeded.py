"""Seeded bugs: what a proof, a check or the simulator must reject (one that cannot fail proves
nothing). A mutant is one source-text replacement whose original text must occur exactly once
in the current source, so it can never silently become a no-op. The Z3 obligations' mutants are
in proofs/mutants.py, the simulator's in ledger/sim/mutants.py; both are `Mutant`s."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
"""The repository root: mutated files are named relative to it."""


@dataclass(frozen=True, slots=True)
class Mutant:
    """A seeded bug.

    Attributes:
        name: stable short name.
        description: the bug in plain words.
        file: the mutated file, relative to the repository root.
        original: the exact source text replaced (must occur once in `file`).
        replacement: the text put in its place.
    """

    name: str
    description: str
    file: str
    original: str
    replacement: str

    @property
    def module(self) -> str:
        """The mutated file's module name."""
        return self.file.removesuffix(".py").replace("/", ".")


class MutantError(Exception):
    """A mutant that does not apply exactly once to the current source, or that cannot be
    installed (the simulator's: the module it mutates is already imported)."""


def occurrences(m: Mutant) -> int:
    """How often the mutant's original text occurs in its file (must be exactly 1)."""
    return (ROOT / m.file).read_text().count(m.original)


def mutated_source(m: Mutant) -> str:
    """The mutated file's text with the bug in it."""
    text = (ROOT / m.file).read_text()
    count = text.count(m.original)
    if count != 1:
        raise MutantError(f"{m.name}: original text occurs {count} times in {m.file}, not once")
    return text.replace(m.original, m.replacement)
