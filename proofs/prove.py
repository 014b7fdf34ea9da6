"""`tollgate prove`: run every proof obligation (Z3) and contract check (CrossHair), and with
`mutants=True` every seeded bug, which must each be rejected by at least one checker."""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from proofs.report import MutantOutcome, Outcome


@dataclass(frozen=True, slots=True)
class ProveReport:
    outcomes: tuple[Outcome, ...]
    mutants: tuple[MutantOutcome, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(o.holds for o in self.outcomes) and all(m.killed for m in self.mutants)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "seconds": round(self.seconds, 3),
            "environment": _environment(),
            "obligations": [o.to_json() for o in self.outcomes],
            "mutants": [m.to_json() for m in self.mutants],
        }


def _environment() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "python": platform.python_version(),
        "z3-solver": version("z3-solver"),
        "crosshair-tool": version("crosshair-tool"),
    }


def run(
    *, mutants: bool = False, smt_dir: Path | None = None, crosshair: bool = True
) -> ProveReport:
    """Run the checkers; never raises on a failed obligation (the report says so)."""
    from proofs import z3proofs

    started = time.perf_counter()
    outcomes: list[Outcome] = list(z3proofs.run(smt_dir=smt_dir))
    if crosshair:
        from proofs import crosshair_check

        outcomes += crosshair_check.run()
    killed: list[MutantOutcome] = []
    if mutants:
        from proofs import mutants as seeded

        killed += seeded.run()
        if crosshair:
            from proofs import crosshair_check

            killed += crosshair_check.run_mutants()
    return ProveReport(tuple(outcomes), tuple(killed), time.perf_counter() - started)


def write_json(report: ProveReport, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report.to_json(), indent=2) + "\n")


def read_json(path: Path) -> ProveReport:
    """A report as `write_json` wrote it (the environment is not kept)."""
    data = json.loads(path.read_text())
    report = ProveReport(
        tuple(Outcome.from_json(o) for o in data["obligations"]),
        tuple(MutantOutcome.from_json(m) for m in data["mutants"]),
        data["seconds"],
    )
    if report.ok != data["ok"]:
        raise ValueError(f"{path}: 'ok' disagrees with the outcomes")
    return report


def failures(report: ProveReport) -> Sequence[str]:
    """One line per failed obligation or surviving mutant, with its counterexample."""
    lines = [
        f"{o.checker} {o.obligation}: {o.detail or 'failed'}"
        for o in report.outcomes
        if not o.holds
    ]
    lines += [f"mutant {m.name} survived: {m.description}" for m in report.mutants if not m.killed]
    return lines
