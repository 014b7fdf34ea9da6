"""`tollgate demo`: run the demo on a SQLite file with a progress bar, print the summary and the
audit, and write the HTML report. The wall clock is read here only, to say how long each phase
took; the simulation itself runs on its own integer clock."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from ledger import report as html_report
from ledger.demo import (
    DEFAULT_HOURS,
    DEFAULT_SEED,
    DEFAULT_USERS,
    LAYERS,
    MONEY_LAYERS,
    DemoConfig,
    DemoError,
    DemoResult,
    Summary,
    Workload,
    check_config,
    check_database_path,
    mark_demo,
    open_demo_store,
    run,
    workload,
)
from ledger.metering import Meter
from ledger.metering.audit import AuditReport, audit


@dataclass(frozen=True, slots=True)
class DemoOutcome:
    """What `demo` did: the result, the audit, where it wrote, and how long each phase took
    (wall-clock seconds: simulate, audit, report)."""

    result: DemoResult
    audit: AuditReport
    database: Path
    report: Path
    seconds: dict[str, float]


def check_report_path(report: Path, db: Path) -> None:
    """Refuse a report path that would overwrite anything but an earlier demo's report."""
    if report.resolve() == db.resolve():
        raise DemoError("--report and --db name the same file; give them different names")
    if report.is_dir():
        raise DemoError(f"{report} is a folder; give --report a file name such as ./demo.html")
    if not report.parent.is_dir():
        raise DemoError(f"{report.parent} is not a folder; create it or choose another --report")
    if report.exists():
        try:
            with report.open("rb") as f:
                head = f.read(2048)
        except OSError as exc:
            raise DemoError(
                f"cannot read {report} ({exc.strerror}); choose another --report"
            ) from exc
        if f'<meta name="generator" content="{html_report.GENERATOR}">'.encode() not in head:
            raise DemoError(
                f"{report} exists and is not a report an earlier `tollgate demo` wrote; the demo "
                "will not overwrite it: choose another --report or remove the file yourself"
            )


def demo(
    db: Path,
    report: Path,
    users: int = DEFAULT_USERS,
    hours: int = DEFAULT_HOURS,
    seed: int = DEFAULT_SEED,
    *,
    synchronous: str = "NORMAL",
) -> DemoOutcome:
    """Run the demo on the SQLite file `db` (replacing an earlier demo's file, refusing any
    other), print the summary and the audit (on the `tollgate` console), and write the HTML
    report to `report` (replacing only an earlier demo's report). Raises `DemoError` before
    anything is written when the paths or numbers will not do. `synchronous` is SQLite's
    (NORMAL by default: see `ledger.demo.open_demo_store`)."""
    from ledger.cli import console as out
    from ledger.cli import print_audit

    config = DemoConfig(users=users, hours=hours, seed=seed)
    check_config(config)
    check_database_path(db)
    check_report_path(report, db)
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    work = workload(config)
    store = open_demo_store(db, synchronous=synchronous)
    try:
        meter = Meter(store)
        mark_demo(meter, config)
        result = _simulate(meter, work, out)
        seconds["simulate"] = time.perf_counter() - started
        started = time.perf_counter()
        audited = audit(store)
        seconds["audit"] = time.perf_counter() - started
    finally:
        store.close()
    print_summary(result.summary, out)
    print_audit(audited)
    started = time.perf_counter()
    html = html_report.render(result.summary, result.timeline, audited, database=str(db))
    html_report.write(report, html)
    seconds["report"] = time.perf_counter() - started
    out.print(
        f"simulated {hours} h for {users} users in {seconds['simulate']:.1f} s "
        f"(audit {seconds['audit']:.1f} s, report {seconds['report']:.1f} s)",
        highlight=False,
    )
    out.print(f"database: {db}", highlight=False, soft_wrap=True)
    out.print(f"HTML report written to {report}", highlight=False, soft_wrap=True)
    return DemoOutcome(result, audited, db, report, seconds)


def _simulate(meter: Meter, work: Workload, out: Console) -> DemoResult:
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        TextColumn("hour {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("{task.fields[decisions]:,} decisions"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=out, transient=False) as bar:
        task = bar.add_task("simulating", total=work.config.hours, decisions=0)

        def progress(done: int, total: int, decisions: int) -> None:
            bar.update(task, completed=done, decisions=decisions)

        result = run(meter, work, progress)
        bar.update(task, completed=work.config.hours, decisions=result.summary.decisions)
    return result


def print_summary(s: Summary, out: Console) -> None:
    """The run's numbers: units per layer, money, refusals and what users did about them."""
    from ledger.report import LAYER_NAMES, credits

    layers = Table(title=f"Demo: {s.users} users, {s.hours} h, seed {s.seed}: units per layer")
    for column, justify in (("layer", "left"), ("units", "right"), ("credits", "right")):
        layers.add_column(column, justify=justify)  # type: ignore[arg-type]
    for layer in LAYERS:
        money = (
            s.spent[layer]
            if layer in MONEY_LAYERS
            else s.written_off
            if layer == "write_off"
            else None
        )
        layers.add_row(
            LAYER_NAMES[layer], f"{s.units[layer]:,}", "" if money is None else credits(money)
        )
    layers.add_row("all layers (credits spent)", f"{sum(s.units.values()):,}", credits(s.charged))
    out.print(layers)
    activity = Table(title="Requests, refusals and money")
    activity.add_column("what")
    activity.add_column("count", justify="right")
    rows = [
        ("requests made (first attempts)", f"{s.requests:,}"),
        ("decisions (retries included)", f"{s.decisions:,}"),
        ("allowed", f"{s.allowed:,}"),
        ("blocked", f"{s.blocked:,}"),
        ("  then bought credits and retried", f"{s.bought:,}"),
        ("  then waited for retry_after", f"{s.waited:,}"),
        ("  then gave up", f"{s.gave_up:,}"),
        ("usage completed in place / reported to the worker", f"{s.completed:,} / {s.reported:,}"),
        ("above their estimate / after their reservation lapsed", f"{s.overshoots:,} / {s.late:,}"),
        ("completions with a write-off", f"{s.write_offs:,}"),
        (
            "credits purchased (at the wall)",
            f"{credits(s.purchased)} ({credits(s.wall_purchased)})",
        ),
        ("grants issued / expired unused", f"{credits(s.granted)} / {credits(s.expired)}"),
    ]
    for row in rows:
        activity.add_row(*row)
    out.print(activity)
    reasons = Table(title="Why requests were blocked (one reason per layer that fell short)")
    reasons.add_column("reason (layer)")
    reasons.add_column("refusals", justify="right")
    for name, count in s.blocked_reasons.items():
        reasons.add_row(name, f"{count:,}")
    out.print(reasons)
