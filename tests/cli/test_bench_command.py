"""`tollgate bench`: runs the repository's bench/ scripts, passes their JSON lines through to
stdout, and says plainly when it cannot run or a script failed."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from ledger.bench_command import SCRIPTS
from ledger.cli import app

BENCH = Path(__file__).resolve().parents[2] / "bench"
runner = CliRunner()


def _flat(text: str) -> str:
    """The console's output with its line wrapping undone."""
    return " ".join(text.split())


def test_a_quick_run_prints_each_scripts_figures_as_json_lines() -> None:
    result = runner.invoke(app, ["bench", "decide_floor", "--quick", "--dir", str(BENCH)])
    assert result.exit_code == 0, result.output
    figures = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [f["name"] for f in figures] == ["decide.floor"]
    assert figures[0]["unit"] == "decisions/s" and figures[0]["value"] > 0
    assert figures[0]["params"]["decisions"] == 20_000  # the --quick counts were passed


def test_an_unknown_benchmark_or_folder_exits_2_saying_what_to_do(tmp_path: Path) -> None:
    unknown = runner.invoke(app, ["bench", "nope", "--dir", str(BENCH)])
    assert unknown.exit_code == 2
    assert "unknown benchmark 'nope'; choose from core, store, decide" in _flat(unknown.output)
    elsewhere = runner.invoke(app, ["bench", "core", "--dir", str(tmp_path)])
    assert elsewhere.exit_code == 2
    assert "run from a clone of the repository" in _flat(elsewhere.output)


def test_a_failing_script_makes_the_command_fail_naming_it(tmp_path: Path) -> None:
    (tmp_path / "core.py").write_text(
        'import sys\nprint(\'{"name": "core.x", "value": 1, "unit": "u"}\')\nsys.exit(3)\n'
    )
    result = runner.invoke(app, ["bench", "core", "--dir", str(tmp_path)])
    assert result.exit_code == 1
    assert '{"name": "core.x"' in result.stdout
    assert "core failed" in _flat(result.output)


def test_every_script_in_bench_is_runnable_by_name_and_named_in_the_readme() -> None:
    parts = {"workload", "store_pg"}  # imported by the scripts (store runs store_pg's figures)
    scripts = {p.stem for p in BENCH.glob("*.py")} - parts
    assert scripts == set(SCRIPTS)
    readme = _flat((BENCH.parent / "README.md").read_text())
    listed = readme.split("names: ", 1)[1].split(")", 1)[0]
    assert listed.split(", ") == list(SCRIPTS)
