"""The `tollgate` command. Each command is a thin shell over the library; errors a user can cause
are reported in one place (`_fail`) with an exit code and a message that says what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from ledger.metering.audit import AuditReport
    from ledger.store import Store

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


@app.command()
def audit(
    db: Annotated[
        str,
        typer.Option(
            "--db", help="The database: sqlite:///path/to/file.db or postgresql://user@host/db."
        ),
    ],
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the full report as JSON here.")
    ] = None,
) -> None:
    """Audit a Tollgate database: the ledger, the usage and monetization datasets, the chain.

    Evaluates L1-L7 and M1-M6 on the rows, verifies the journal's hash chain, rebuilds every
    balance from the journal, and prints counts, totals, the unsettled backlog and every
    discrepancy with its ids. Exits 1 on any discrepancy, 2 when the database cannot be read.

    Example: tollgate audit --db sqlite:///tollgate.db --json audit.json
    """
    from ledger.metering.audit import audit as run_audit

    store = _open_existing(db)
    try:
        report = run_audit(store)
    finally:
        store.close()
    print_audit(report)
    if json_path is not None:
        json_path.write_text(json.dumps(report.to_json(), indent=2) + "\n", encoding="utf-8")
        console.print(f"report written to {json_path}")
    if not report.ok:
        raise typer.Exit(code=1)


def _open_existing(url: str) -> Store:
    """Open a store that must already exist (an audit never creates a database)."""
    from ledger.store import StoreError, store_from_url

    if url.startswith("sqlite:///") and not Path(url[len("sqlite:///") :]).is_file():
        _fail(f"no database at {url[len('sqlite:///') :]}; give the file tollgate wrote")
    if url.startswith("memory:"):
        _fail("a memory:// store is empty in a new process; audit a sqlite or postgresql URL")
    try:
        return store_from_url(url)
    except StoreError as exc:
        _fail(str(exc))


def _fail(message: str) -> NoReturn:
    console.print(f"[red]error:[/red] {message}", markup=True, highlight=False)
    raise typer.Exit(code=2)


def print_audit(report: AuditReport) -> None:
    """The audit's summary: datasets, totals, backlog, checks, discrepancies, verdict."""
    table = Table(title="Datasets")
    table.add_column("dataset")
    table.add_column("rows", justify="right")
    for name, count in report.counts.items():
        table.add_row(name.replace("_", " "), f"{count:,}")
    console.print(table)
    totals = Table(title="Totals (units; money in micro-credits)")
    totals.add_column("total")
    totals.add_column("value", justify="right")
    for name, value in report.totals.items():
        totals.add_row(name.replace("_", " "), f"{value:,}")
    console.print(totals)
    oldest = "" if report.oldest_unsettled is None else f", oldest at {report.oldest_unsettled}"
    console.print(f"unsettled usage events: {report.backlog:,}{oldest}")
    for check in report.checks:
        console.print(f"  checked: {check}", highlight=False)
    for line in report.discrepancies[:200]:
        console.print(f"[red]DISCREPANCY[/red] {line}", markup=True, highlight=False)
    if len(report.discrepancies) > 200:
        console.print(f"... and {len(report.discrepancies) - 200} more (see --json)")
    verdict = (
        "[green]0 discrepancies[/green]"
        if report.ok
        else (f"[red]{len(report.discrepancies)} discrepancies[/red]")
    )
    console.print(
        f"audit: {verdict} ({report.rows:,} rows in {report.seconds:.2f} s)",
        markup=True,
        highlight=False,
    )


def main() -> None:
    app()
