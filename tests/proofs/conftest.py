"""One run of the real `tollgate prove --mutants --json` per test session.

Every Z3 obligation, CrossHair contract and seeded bug is checked once, by the command CI
pipelines run, and the tests read its JSON report: whether each obligation holds and which
checkers rejected each seeded bug. The command's exit code must agree with the report. Running
any one of these tests runs the whole command (about two and a half minutes here).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from proofs import prove
from proofs.report import MutantOutcome, Outcome

ROOT = Path(__file__).resolve().parents[2]
PROVE_TIMEOUT_SECONDS = 1_200


@pytest.fixture(scope="session")
def prove_report(tmp_path_factory: pytest.TempPathFactory) -> prove.ProveReport:
    path = tmp_path_factory.mktemp("prove") / "report.json"
    done = subprocess.run(
        [sys.executable, "-m", "ledger", "prove", "--mutants", "--json", str(path)],
        capture_output=True,
        text=True,
        timeout=PROVE_TIMEOUT_SECONDS,
        cwd=ROOT,
    )
    assert path.exists(), f"`tollgate prove` wrote no report:\n{done.stdout}\n{done.stderr}"
    report = prove.read_json(path)
    assert done.returncode == (0 if report.ok else 1), f"exit {done.returncode}:\n{done.stderr}"
    return report


@pytest.fixture(scope="session")
def proved(prove_report: prove.ProveReport) -> dict[str, Outcome]:
    """Each obligation's outcome by its name."""
    by_name = {o.obligation: o for o in prove_report.outcomes}
    assert len(by_name) == len(prove_report.outcomes), "two obligations share a name"
    return by_name


@pytest.fixture(scope="session")
def seeded(prove_report: prove.ProveReport) -> dict[str, MutantOutcome]:
    """Each seeded bug's outcome by its name (CrossHair's twins are named "crosshair.NAME")."""
    by_name = {m.name: m for m in prove_report.mutants}
    assert len(by_name) == len(prove_report.mutants), "two seeded bugs share a name"
    return by_name
