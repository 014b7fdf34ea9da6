"""The `tollgate` command. Each command is a thin shell over the library; errors a user can cause
are reported in one place (`_fail`) with an exit code and a message that says what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="tollgate",
    help="Tollgate: an access-and-credits engine on a formally checked ledger.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()


@app.callback()
def _root() -> None:
    """Tollgate: an access-and-credits engine on a formally checked ledger."""


@app.command()
def prove(
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the full report as JSON here.")
    ] = None,
    mutants: Annotated[
        bool, typer.Option("--mutants", help="Also run the seeded bugs; each must be rejected.")
    ] = False,
    smt_dir: Annotated[
        Path | None, typer.Option("--smt-dir", help="Save each Z3 obligation as SMT-LIB here.")
    ] = None,
    crosshair: Annotated[
        bool, typer.Option("--crosshair/--no-crosshair", help="Run the CrossHair contract checks.")
    ] = True,
) -> None:
    """Prove the ledger's invariants (Z3) and check its contracts (CrossHair).

    Exits 0 only when every obligation holds and every seeded bug is rejected.

    A failure prints its counterexample.

    Example: tollgate prove --mutants --json prove-report.json
    """
    from proofs import prove as prover

    report = prover.run(mutants=mutants, smt_dir=smt_dir, crosshair=crosshair)
    _print_report(report)
    if json_path is not None:
        prover.write_json(report, json_path)
        console.print(f"report written to {json_path}")
    problems = prover.failures(report)
    for line in problems:
        console.print(f"[red]FAIL[/red] {line}", markup=True, highlight=False)
    if problems:
        raise typer.Exit(code=1)


def _print_report(report: object) -> None:
    from proofs.prove import ProveReport

    assert isinstance(report, ProveReport)
    table = Table(title="Proof obligations")
    for column in ("obligation", "checker", "result", "seconds"):
        table.add_column(column, justify="right" if column == "seconds" else "left")
    for o in report.outcomes:
        result = "[green]holds[/green]" if o.holds else "[red]FAILS[/red]"
        table.add_row(o.obligation, o.checker, result, f"{o.seconds:.2f}")
    console.print(table)
    if report.mutants:
        mutants = Table(title="Seeded bugs (each must be rejected)")
        for column in ("mutant", "rejected by", "seconds"):
            mutants.add_column(column)
        for m in report.mutants:
            names = [k.split(" | ")[0] for k in m.killed_by]  # the counterexample is in --json
            killers = ", ".join(names[:3]) + (" …" if len(names) > 3 else "")
            mutants.add_row(m.name, killers or "[red]SURVIVED[/red]", f"{m.seconds:.2f}")
        console.print(mutants)
    held = sum(o.holds for o in report.outcomes)
    killed = sum(m.killed for m in report.mutants)
    summary = f"{held}/{len(report.outcomes)} obligations hold"
    if report.mutants:
        summary += f"; {killed}/{len(report.mutants)} seeded bugs rejected"
    console.print(f"{summary}; {report.seconds:.1f} s")


def main() -> None:
    app()
