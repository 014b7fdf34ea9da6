"""The `tollgate prove` shell: its exit code and what it prints follow the report exactly."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.cli import app
from proofs import prove
from proofs.report import MutantOutcome, Outcome

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def _fake(report: prove.ProveReport) -> object:
    def run(**_: object) -> prove.ProveReport:
        return report

    return run


def _report(holds: bool, killed: bool) -> prove.ProveReport:
    outcome = Outcome("L1.no_overdraft.create_transfer", "z3", holds, 0.01, "k=5 debits 1 > 0")
    mutant = MutantOutcome(
        "guard_removed", "overdraft guard removed", ("L1",) if killed else (), 0.1
    )
    return prove.ProveReport((outcome,), (mutant,), 0.2)


def test_prove_exits_zero_when_everything_holds(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(prove, "run", _fake(_report(holds=True, killed=True)))
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["prove", "--mutants", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "1/1 obligations hold; 1/1 seeded bugs rejected" in result.output
    written = json.loads(out.read_text())
    assert written["ok"] is True
    assert written["obligations"][0]["obligation"] == "L1.no_overdraft.create_transfer"
    assert written["mutants"][0]["killed"] is True


def test_prove_fails_and_prints_the_counterexample(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prove, "run", _fake(_report(holds=False, killed=True)))
    result = runner.invoke(app, ["prove"])
    assert result.exit_code == 1
    assert "k=5 debits 1 > 0" in result.output


def test_prove_fails_when_a_mutant_survives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prove, "run", _fake(_report(holds=True, killed=False)))
    result = runner.invoke(app, ["prove", "--mutants"])
    assert result.exit_code == 1
    assert "mutant guard_removed survived" in result.output


@pytest.mark.parametrize("holds,killed", [(True, True), (False, True), (True, False)])
def test_a_written_report_reads_back_the_same(tmp_path: Path, holds: bool, killed: bool) -> None:
    report = _report(holds, killed)
    prove.write_json(report, tmp_path / "report.json")
    assert prove.read_json(tmp_path / "report.json") == report


@pytest.mark.parametrize(
    "edit",
    [
        lambda data: data.update(ok=not data["ok"]),
        lambda data: data["mutants"][0].update(killed=False),
    ],
    ids=["ok flipped", "killed flipped"],
)
def test_a_report_whose_verdict_was_edited_is_refused(tmp_path: Path, edit: Any) -> None:
    path = tmp_path / "report.json"
    prove.write_json(_report(holds=True, killed=True), path)
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="disagrees"):
        prove.read_json(path)


def _commands() -> list[str]:
    names = []
    for command in app.registered_commands:
        assert command.callback is not None
        names.append(command.name or command.callback.__name__.replace("_", "-"))
    return sorted(names)


def test_every_command_has_help_with_an_example() -> None:
    for name in _commands():
        result = runner.invoke(app, [name, "--help"])
        assert result.exit_code == 0, name
        assert "Example: tollgate " + name in result.output, name


def test_every_command_is_documented_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    for name in _commands():
        assert re.search(rf"`tollgate {name}\b", readme), f"README does not document {name}"


def test_python_dash_m_ledger_runs_the_same_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ledger", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    assert "prove" in result.stdout
