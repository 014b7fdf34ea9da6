"""The `tollgate demo` command in ledger/cli.py: its help, its defaults (the same as the
library's), a small run, and a refusal's exit code. Skipped until the command is wired in."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ledger import cli
from ledger.demo import DEFAULT_HOURS, DEFAULT_SEED, DEFAULT_USERS, USERS_MAX

runner = CliRunner()


@pytest.fixture
def command() -> object:
    found = getattr(cli, "demo", None)
    if found is None:
        pytest.skip("`tollgate demo` is not in ledger/cli.py yet")
    return found


def test_help_has_an_example_and_the_defaults_match_the_library(command: object) -> None:
    result = runner.invoke(cli.app, ["demo", "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: tollgate demo" in result.output
    defaults = {
        name: p.default.default if hasattr(p.default, "default") else p.default
        for name, p in inspect.signature(command).parameters.items()  # type: ignore[arg-type]
    }
    assert defaults["users"] == DEFAULT_USERS and USERS_MAX == 5000
    assert defaults["hours"] == DEFAULT_HOURS and defaults["seed"] == DEFAULT_SEED
    assert defaults["db"] == Path("tollgate-demo.db")
    assert defaults["report"] == Path("tollgate-demo.html")


def test_a_small_run_exits_zero_and_a_foreign_file_exits_two(
    command: object, tmp_path: Path
) -> None:
    db, report = tmp_path / "d.db", tmp_path / "d.html"
    arguments = ["demo", "--db", str(db), "--report", str(report), "--users", "5"]
    result = runner.invoke(cli.app, [*arguments, "--hours", "12"])
    assert result.exit_code == 0, result.output
    assert "audit: 0 discrepancies" in result.output and report.is_file()
    notes = tmp_path / "notes.txt"
    notes.write_text("keep me\n")
    result = runner.invoke(cli.app, ["demo", "--db", str(notes), "--report", str(report)])
    assert result.exit_code == 2
    assert "not a database an earlier `tollgate demo` made" in " ".join(result.output.split())
    assert notes.read_text() == "keep me\n"
