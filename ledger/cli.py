"""The `tollgate` command. Each command is a thin shell over the library; errors a user can cause
are reported in one place (`_fail`) with an exit code and a message that says what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from ledger.bench_command import SCRIPTS

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


@app.command()
def demo(
    db: Annotated[
        Path,
        typer.Option(
            "--db",
            help="The SQLite file to write. A file an earlier demo wrote is replaced; any other "
            "existing file is refused, never overwritten.",
        ),
    ] = Path("tollgate-demo.db"),
    report: Annotated[
        Path,
        typer.Option(
            "--report",
            help="Where to write the HTML report (an earlier demo's report is replaced; any "
            "other existing file is refused).",
        ),
    ] = Path("tollgate-demo.html"),
    users: Annotated[
        int, typer.Option("--users", min=1, max=5000, help="How many users to simulate.")
    ] = 200,
    hours: Annotated[
        int,
        typer.Option("--hours", min=1, max=840, help="Simulated hours (168: a week)."),
    ] = 168,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, help="The seed: the same seed gives the same numbers."),
    ] = 1,
) -> None:
    """Run the main job: a Codex/Sora-like week of use, metered on an embedded SQLite file.

    Simulated users in bursty sessions meet a plan with a 5-hour and a weekly rate window, a
    daily video allowance, a promotional grant, purchased credits and organisation pools. A
    progress bar follows the simulated clock; then come a summary (units per layer, blocked
    requests and why, credits spent, write-offs), the audit of the database, and an HTML
    report with charts, written to --report. Exits 1 if the audit finds a discrepancy, 2 if a
    path or a number will not do.

    Example: tollgate demo --users 200 --hours 168 --seed 1 --report tollgate-demo.html
    """
    from ledger.demo import DemoError
    from ledger.demo_command import demo as run_demo

    try:
        outcome = run_demo(db, report, users, hours, seed)
    except DemoError as exc:
        _fail(str(exc))
    if not outcome.audit.ok:
        raise typer.Exit(code=1)


@app.command()
def serve(
    db: Annotated[
        str,
        typer.Option(
            "--db",
            help="The database: sqlite:///path/to/file.db (created on first use), "
            "postgresql://user@host/db, or memory:// (lost on exit).",
        ),
    ],
    redis: Annotated[
        str | None,
        typer.Option(
            "--redis",
            help="Keep rate windows in Redis (redis://host:6379/0), shared by every server on "
            "it; default: in this process.",
        ),
    ] = None,
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    settle_interval: Annotated[
        float,
        typer.Option("--settle-interval", help="Seconds between the settlement worker's passes."),
    ] = 0.5,
) -> None:
    """Serve the HTTP API: one uvicorn process with the settlement worker inside it.

    Endpoints, roles and errors: see "HTTP API" in README.md, or /docs once it runs. Make keys
    with `tollgate keys create`; $TOLLGATE_ADMIN_KEY, if set, is also accepted as an admin key
    (not stored: for a memory:// store). Stops cleanly on Ctrl-C or SIGTERM.

    Example: tollgate serve --db sqlite:///tollgate.db --port 8080
    """
    from ledger.api.serve import ServerConflictError
    from ledger.api.serve import serve as run_server
    from ledger.store import StoreError

    try:
        run_server(db, redis, host, port, settle_interval_s=settle_interval)
    except (StoreError, ValueError, ServerConflictError) as exc:
        _fail(str(exc))


keys_app = typer.Typer(no_args_is_help=True)
app.add_typer(keys_app, name="keys")


@keys_app.callback()
def _keys() -> None:
    """API keys of the HTTP service (`tollgate serve`).

    Example: tollgate keys create --db sqlite:///tollgate.db --role admin
    """


@keys_app.command("create")
def keys_create(
    db: Annotated[
        str,
        typer.Option(
            "--db", help="The database the server uses (sqlite:///... or postgresql://...)."
        ),
    ],
    role: Annotated[
        str,
        typer.Option("--role", help="service, admin, auditor, or customer (a read token)."),
    ],
    customer: Annotated[
        str | None,
        typer.Option("--customer", help="The customer a read token may read (role customer)."),
    ] = None,
) -> None:
    """Make an API key and print it once; only its SHA-256 is stored in the database.

    A running server knows the new key within a second.

    Example: tollgate keys create --db sqlite:///tollgate.db --role admin
    """
    from ledger.api.serve import create_key
    from ledger.core.errors import LedgerError

    if db.startswith("memory:"):
        _fail("a memory:// store lives in the server's process: set TOLLGATE_ADMIN_KEY instead")
    try:
        key = create_key(db, role, customer)
    except (LedgerError, ValueError) as exc:
        _fail(str(exc))
    typer.echo(key)
    typer.echo("store this key now: it is not shown again", err=True)


DB_OPTION = typer.Option(
    "--db", help="The database the server uses (sqlite:///... or postgresql://...)."
)


@keys_app.command("list")
def keys_list(db: Annotated[str, DB_OPTION]) -> None:
    """List the stored keys: id, role, customer, when made and when revoked (never the keys).

    Example: tollgate keys list --db sqlite:///tollgate.db
    """
    from ledger.api.serve import list_keys
    from ledger.core.errors import LedgerError

    if db.startswith("memory:"):
        _fail("a memory:// store lives in the server's process: it has no keys to list here")
    try:
        records = list_keys(db)
    except (LedgerError, ValueError) as exc:
        _fail(str(exc))
    table = Table()
    for column in ("key id", "role", "customer", "created (UTC)", "revoked (UTC)"):
        table.add_column(column, no_wrap=True)
    for r in records:
        revoked = "" if r.revoked_at is None else _utc(r.revoked_at)
        table.add_row(r.key_id, r.role.value, r.customer or "", _utc(r.created_at), revoked)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    db: Annotated[str, DB_OPTION],
    key_id: Annotated[str, typer.Argument(help="The key's id, as `tollgate keys list` shows.")],
) -> None:
    """Revoke a key: every server refuses it within 5 seconds (401). The row is kept, marked
    revoked, so listings still show it. Revoking it again changes nothing.

    Example: tollgate keys revoke --db sqlite:///tollgate.db 3f2a9c0d1e4b
    """
    from ledger.api.auth import UnknownKeyError
    from ledger.api.serve import revoke_key
    from ledger.core.errors import LedgerError

    if db.startswith("memory:"):
        _fail("a memory:// store lives in the server's process: it has no keys to revoke here")
    try:
        record = revoke_key(db, key_id)
    except (LedgerError, ValueError, UnknownKeyError) as exc:
        _fail(str(exc))
    assert record.revoked_at is not None
    typer.echo(f"revoked {record.key_id} ({record.role.value}) at {_utc(record.revoked_at)}")


def _utc(ns: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ns // 10**9, UTC).strftime("%Y-%m-%d %H:%M:%S")


@app.command()
def bench(
    names: Annotated[
        list[str] | None,
        typer.Argument(help=f"Which: {', '.join(SCRIPTS)} (default: all)."),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="Small counts: a smoke test, not figures to record.")
    ] = False,
    directory: Annotated[
        Path, typer.Option("--dir", help="The repository's bench/ folder.")
    ] = Path("bench"),
) -> None:
    """Run the benchmarks and print their figures: one JSON object per line on stdout, then a
    summary table. The scripts live in the repository's bench/ folder (run this from a clone,
    or pass --dir); bench/RESULTS.md records their figures and the commands that made them.
    store, settle and http start their own PostgreSQL, Redis and `tollgate serve` on loopback
    (each says on stderr what it skips). Exit code 1 if a script failed.

    Example: tollgate bench decide http --quick
    """
    from ledger.bench_command import BenchError, run_script, scripts_to_run

    try:
        chosen = scripts_to_run(names or [], directory)
    except BenchError as exc:
        _fail(str(exc))
    outcomes = [run_script(name, script, quick) for name, script in chosen]
    table = Table("benchmark", "figure", "value", "unit")
    for outcome in outcomes:
        if outcome.returncode != 0:
            table.add_row(outcome.name, "[red]failed[/red]", f"exit {outcome.returncode}", "")
        for f in outcome.figures:
            table.add_row(outcome.name, f["name"], f"{f['value']:,}", f["unit"])
    Console(stderr=True).print(table)
    failed = [o.name for o in outcomes if o.returncode != 0]
    if failed:
        Console(stderr=True).print(f"[red]error:[/red] {', '.join(failed)} failed (see above)")
        raise typer.Exit(code=1)


@app.command()
def simulate(
    seed: Annotated[int | None, typer.Option("--seed", help="Run this one seed.")] = None,
    seeds: Annotated[
        str | None, typer.Option("--seeds", help="Run a swarm of seeds A..B (both included).")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Steps per seed.")] = 2000,
    store: Annotated[str, typer.Option("--store", help="memory or sqlite.")] = "memory",
    only: Annotated[
        str | None,
        typer.Option("--only", help="Replay only these steps of the seed (a shrunk trace's)."),
    ] = None,
    trace: Annotated[
        Path | None, typer.Option("--trace", help="Write the seed's full trace here.")
    ] = None,
    processes: Annotated[
        int | None,
        typer.Option("--processes", help="Processes for a swarm (default: every core)."),
    ] = None,
) -> None:
    """Simulate the whole engine from a seed, with faults, checking every step.

    API nodes and settlement workers share one store. The seed draws the workload and the
    faults: nodes killed, clock skew, redelivered, reordered and duplicated requests, stalled
    workers, failed store transactions. Every step is checked against a reference ledger and an
    independent metering model (L1-L7, M1-M6). On a violation it prints the seed, the step and
    a shrunk trace, and exits 1. The same seed always gives the same trace. --seeds A..B runs a
    swarm.

    Example: tollgate simulate --seed 7 --steps 2000
    """
    from ledger.sim.command import run

    code = run(
        seed=seed,
        seeds=seeds,
        steps=steps,
        store=store,
        only=only,
        trace=trace,
        processes=processes,
        echo=lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
    )
    if code:
        raise typer.Exit(code=code)


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
