"""The demo's HTML report: one self-contained file (inline CSS and SVG, no script, nothing
fetched), so it opens anywhere, offline included.

It shows the run's parameters and summary numbers, a line chart of sample users' own funds over
time, a stacked chart of the units each layer served per hour, a bar chart of refusals per hour,
the refusals' reasons, and the audit's result. Charts are drawn here in integer pixel
coordinates; money is shown from integer micro-credits.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import NamedTuple

from ledger.demo import CREDIT, HOUR, LAYERS, MONEY_LAYERS, NS, Summary, Timeline
from ledger.metering.audit import AuditReport

GENERATOR = "tollgate demo"
"""The `<meta name="generator">` a report carries: a later demo may replace such a file."""

WIDTH = 960
HEIGHT = 340
LEFT, RIGHT, TOP, BOTTOM = 78, 16, 16, 44
PALETTE = ("#0f766e", "#c2410c", "#4338ca", "#be185d", "#a16207", "#0e7490")
LINE_WIDTHS = ("5", "4", "3.2", "2.5", "2")
BAR_COLOUR = "#e11d48"
AXIS_COLOUR = "#334155"
LAYER_COLOURS = {
    "windows": "#94a3b8",
    "allowance": "#64748b",
    "grants": "#16a34a",
    "credits": "#2563eb",
    "pool": "#9333ea",
    "write_off": "#dc2626",
}
LAYER_NAMES = {
    "windows": "rate windows (free)",
    "allowance": "daily allowance (free)",
    "grants": "promotional grants",
    "credits": "purchased credits",
    "pool": "organisation pool",
    "write_off": "written off",
}

_CSS = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #0f172a;
  margin: 0 auto; max-width: 1000px; padding: 24px; background: #f8fafc; }
h1 { margin: 0 0 4px; font-size: 28px; } h2 { margin: 28px 0 8px; font-size: 20px; }
.lede { color: #475569; margin: 0 0 16px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(118px, 1fr)); gap: 10px; }
.card { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; padding: 10px 12px; }
.card b { display: block; font-size: 22px; } .card span { color: #64748b; font-size: 13px; }
table { border-collapse: collapse; background: #fff; margin: 4px 0 8px; }
th, td { border: 1px solid #e2e8f0; padding: 4px 10px; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
figure { background: #fff; border: 1px solid #e2e8f0; border-radius: 8px; margin: 12px 0;
  padding: 12px; } figcaption { font-weight: 600; margin-bottom: 6px; }
svg { width: 100%; height: auto; display: block; } svg text { font: 12px system-ui, sans-serif;
  fill: #475569; } .legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 13px; }
.swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px;
  margin-right: 5px; vertical-align: -1px; }
.verdict { font-size: 18px; font-weight: 600; padding: 8px 12px; border-radius: 6px; }
.ok { background: #dcfce7; color: #166534; } .bad { background: #fee2e2; color: #991b1b; }
footer { color: #64748b; font-size: 13px; margin-top: 28px; }
"""


class Series(NamedTuple):
    label: str
    colour: str
    values: tuple[int, ...]


def credits(micro: int) -> str:
    """Micro-credits shown as credits with two decimals (truncated), from integers only."""
    sign = "-" if micro < 0 else ""
    whole, rest = divmod(abs(micro), CREDIT)
    return f"{sign}{whole:,}.{rest * 100 // CREDIT:02d}"


def percent(part: int, whole: int) -> str:
    """`part` of `whole` as a percentage with one decimal (truncated), from integers."""
    tenths = part * 1000 // max(1, whole)
    return f"{tenths // 10}.{tenths % 10}%"


def audit_line(audit: AuditReport) -> str:
    """The audit's verdict, worded as `tollgate audit` prints it."""
    found = len(audit.discrepancies)
    verdict = "0 discrepancies" if audit.ok else f"{found} discrepancies"
    return f"audit: {verdict} ({audit.rows:,} rows in {audit.seconds:.2f} s)"


def render(summary: Summary, timeline: Timeline, audit: AuditReport, *, database: str) -> str:
    """The report as one HTML document."""
    title = f"Tollgate demo: {summary.users} users, {summary.hours} simulated hours"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta name="generator" content="{GENERATOR}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="lede">{escape(_lede(summary, timeline))}</p>',
        _cards(summary, audit),
        "<h2>Where the units came from</h2>",
        _layer_table(summary),
        "<h2>Charts</h2>",
        _balance_figure(timeline),
        _layers_figure(timeline),
        _blocked_figure(timeline),
        "<h2>Blocked requests and why</h2>",
        _blocked_tables(summary),
        "<h2>Audit</h2>",
        _audit_section(audit),
        f"<footer>Generated by <code>{GENERATOR}</code> (seed {summary.seed}) from the "
        f"database <code>{escape(database)}</code>. Audit it again with "
        f"<code>tollgate audit --db sqlite:///{escape(database)}</code>.</footer>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write(path: Path, html: str) -> None:
    """Write the report (through a temporary file, so a reader never sees half of it)."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(html, encoding="utf-8")
    partial.replace(path)


def _lede(s: Summary, t: Timeline) -> str:
    begins = _moment(t.start).strftime("%A %d %B %Y, %H:%M UTC")
    return (
        f"A Codex/Sora-like plan (a 5-hour and a weekly rate window per feature, a daily video "
        f"allowance, promotional grants, purchased credits and {s.orgs} organisation pool(s)) "
        f"metered for {s.users} simulated users in bursty sessions, from {begins} for "
        f"{s.hours} hours. Seed {s.seed}: the same seed gives the same numbers."
    )


def _moment(ns: int) -> datetime:
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=ns // NS)


def _cards(s: Summary, audit: AuditReport) -> str:
    cards = [
        (f"{s.requests:,}", "requests made"),
        (f"{s.allowed:,}", "decisions allowed"),
        (f"{s.blocked:,}", "decisions blocked"),
        (credits(s.charged), "credits spent"),
        (credits(s.written_off), f"credits written off ({s.write_offs} completions)"),
        (f"{s.wall_purchases:,}", "purchases at the wall"),
        (f"{len(audit.discrepancies):,}", "audit discrepancies"),
    ]
    items = "".join(
        f'<div class="card"><b>{escape(v)}</b><span>{escape(k)}</span></div>' for v, k in cards
    )
    return f'<div class="cards">{items}</div>'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], numeric_from: int = 1) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{escape(c)}</td>' if i >= numeric_from else f"<td>{escape(c)}</td>"
            for i, c in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _layer_table(s: Summary) -> str:
    total = sum(s.units.values())
    rows = [
        [
            LAYER_NAMES[layer],
            f"{s.units[layer]:,}",
            percent(s.units[layer], total),
            credits(s.spent[layer]) if layer in MONEY_LAYERS else "",
        ]
        for layer in LAYERS
    ]
    rows[-1][3] = credits(s.written_off)
    spent = "all layers (credits: spent, write-offs excluded)"
    rows.append([spent, f"{total:,}", percent(total, total), credits(s.charged)])
    money = [
        ["credits purchased", f"{s.purchases:,}", credits(s.purchased)],
        [
            "of which at the wall (after a refusal)",
            f"{s.wall_purchases:,}",
            credits(s.wall_purchased),
        ],
        ["promotional grants issued", "", credits(s.granted)],
        ["expired grant remainders (breakage)", "", credits(s.expired)],
        ["organisation pools topped up", f"{s.orgs:,}", credits(s.pool_top_ups)],
    ]
    return _table(["layer", "units", "share", "credits"], rows) + _table(
        ["money in", "count", "credits"], money
    )


def _blocked_tables(s: Summary) -> str:
    outcomes = [
        ["bought credits (the refusal's unblock amount) and retried", f"{s.bought:,}"],
        ["waited for retry_after and retried", f"{s.waited:,}"],
        ["gave up", f"{s.gave_up:,}"],
    ]
    reasons = [[name, f"{count:,}"] for name, count in s.blocked_reasons.items()]
    note = (
        "<p>A refusal carries one reason for every layer that fell short, so the reasons add "
        "up to more than the refusals.</p>"
    )
    return (
        _table(["after a refusal, the user", "refusals"], outcomes)
        + note
        + _table(["reason (layer)", "refusals"], reasons)
    )


def _audit_section(audit: AuditReport) -> str:
    css = "ok" if audit.ok else "bad"
    lines = [f'<p class="verdict {css}" id="audit-verdict">{escape(audit_line(audit))}</p>']
    lines.append("<ul>" + "".join(f"<li>checked: {escape(c)}</li>" for c in audit.checks) + "</ul>")
    if audit.discrepancies:
        shown = audit.discrepancies[:200]
        lines.append("<ul>" + "".join(f"<li>{escape(d)}</li>" for d in shown) + "</ul>")
    totals = [[k.replace("_", " "), f"{v:,}"] for k, v in audit.totals.items()]
    counts = [[k.replace("_", " "), f"{v:,}"] for k, v in audit.counts.items()]
    lines.append(_table(["dataset", "rows"], counts))
    lines.append(_table(["total (units; money in micro-credits)", "value"], totals))
    lines.append(f"<p>Unsettled usage events: {audit.backlog:,}.</p>")
    return "\n".join(lines)


# -- charts -------------------------------------------------------------------------------------


def nice_step(top: int, ticks: int = 5) -> int:
    """The smallest 1-2-5 step (integer) that covers `top` in at most `ticks` steps."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if step * m * ticks >= top:
                return step * m
        step *= 10


def _x(hour: int, hours: int) -> int:
    return LEFT + hour * (WIDTH - LEFT - RIGHT) // max(1, hours)


def _y(value: int, top: int) -> int:
    plot = HEIGHT - TOP - BOTTOM
    return TOP + plot - value * plot // max(1, top)


def _axes(hours: int, start: int, top: int, step: int, unit: str, scale: int) -> list[str]:
    """Grid lines, y labels (value // scale, then `unit`) and x labels (days or hours)."""
    out = []
    for value in range(0, top + 1, step):
        y = _y(value, top)
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{WIDTH - RIGHT}" y2="{y}" stroke="#e2e8f0"/>')
        label = f"{value // scale:,}" if scale > 1 else f"{value:,}"
        out.append(f'<text x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{label}</text>')
    out.append(
        f'<text x="12" y="{TOP + 4}" transform="rotate(-90 12 {TOP + 4})" '
        f'text-anchor="end">{escape(unit)}</text>'
    )
    every = 24 if hours > 48 else 6 if hours > 12 else 1
    for hour in range(0, hours + 1, every):
        x = _x(hour, hours)
        moment = _moment(start + hour * HOUR)
        label = moment.strftime("%a %d") if every == 24 else moment.strftime("%a %H:%M")
        out.append(f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{HEIGHT - BOTTOM}" stroke="#f1f5f9"/>')
        anchor = "end" if hour == hours and hour else "middle"
        out.append(
            f'<text x="{x}" y="{HEIGHT - BOTTOM + 18}" text-anchor="{anchor}">{label}</text>'
        )
    base = HEIGHT - BOTTOM
    out.append(
        f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="{AXIS_COLOUR}"/>'
    )
    return out


def _svg(chart_id: str, label: str, body: list[str]) -> str:
    return (
        f'<svg id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(label)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(label)}</title>" + "".join(body) + "</svg>"
    )


def _legend(series: Sequence[Series]) -> str:
    items = "".join(
        f'<span><i class="swatch" style="background:{s.colour}"></i>{escape(s.label)}</span>'
        for s in series
    )
    return f'<div class="legend">{items}</div>'


def line_chart(chart_id: str, label: str, start: int, hours: int, series: Sequence[Series]) -> str:
    """One polyline per series over hours 0..len(values)-1; values in micro-credits."""
    top_value = max([v for s in series for v in s.values] + [CREDIT])
    step = nice_step(top_value // CREDIT + 1) * CREDIT
    top = step * -(-top_value // step)
    body = _axes(hours, start, top, step, "credits", CREDIT)
    for i, s in enumerate(series):
        points = " ".join(f"{_x(h, hours)},{_y(v, top)}" for h, v in enumerate(s.values))
        width = LINE_WIDTHS[
            min(i, len(LINE_WIDTHS) - 1)
        ]  # a line drawn over another shows its edges
        body.append(
            f'<polyline fill="none" stroke="{s.colour}" stroke-width="{width}" '
            f'stroke-linejoin="round" points="{points}"><title>{escape(s.label)}</title></polyline>'
        )
    return _svg(chart_id, label, body)


def stacked_chart(
    chart_id: str, label: str, start: int, hours: int, series: Sequence[Series]
) -> str:
    """Series stacked bottom-up, one closed path per series; hour h's value spans [h, h+1]."""
    totals = [sum(s.values[h] for s in series) for h in range(hours)]
    top_value = max([*totals, 1])
    step = nice_step(top_value)
    top = step * -(-top_value // step)
    body = _axes(hours, start, top, step, "units per hour", 1)
    below = [0] * hours
    for s in series:
        above = [b + v for b, v in zip(below, s.values, strict=True)]
        upper = [f"{_x(h + i, hours)},{_y(above[h], top)}" for h in range(hours) for i in (0, 1)]
        lower = [
            f"{_x(h + i, hours)},{_y(below[h], top)}"
            for h in reversed(range(hours))
            for i in (1, 0)
        ]
        path = "M" + " L".join(upper + lower) + " Z"
        body.append(
            f'<path d="{path}" fill="{s.colour}" stroke="none">'
            f"<title>{escape(s.label)}: {sum(s.values):,} units</title></path>"
        )
        below = above
    return _svg(chart_id, label, body)


def bar_chart(chart_id: str, label: str, start: int, hours: int, values: Sequence[int]) -> str:
    top_value = max([*values, 1])
    step = nice_step(top_value)
    top = step * -(-top_value // step)
    body = _axes(hours, start, top, step, "refusals per hour", 1)
    for h, v in enumerate(values):
        if v:
            x, y = _x(h, hours), _y(v, top)
            width, height = max(1, _x(h + 1, hours) - x - 1), _y(0, top) - y
            body.append(
                f'<rect x="{x}" y="{y}" width="{width}" height="{height}" fill="{BAR_COLOUR}">'
                f"<title>hour {h}: {v} refusals</title></rect>"
            )
    return _svg(chart_id, label, body)


def _balance_figure(t: Timeline) -> str:
    series = [
        Series(f"{name} ({t.labels.get(name, '')})", PALETTE[i % len(PALETTE)], values)
        for i, (name, values) in enumerate(t.balances.items())
    ]
    label = "Own funds over time (purchased credits + live grants) of sample users"
    chart = line_chart("balance-chart", label, t.start, t.hours, series)
    return f"<figure><figcaption>{escape(label)}</figcaption>{chart}{_legend(series)}</figure>"


def _layers_figure(t: Timeline) -> str:
    series = [Series(LAYER_NAMES[k], LAYER_COLOURS[k], t.units[k]) for k in LAYERS]
    label = "Units served per layer, per hour (stacked)"
    chart = stacked_chart("layers-chart", label, t.start, t.hours, series)
    return f"<figure><figcaption>{escape(label)}</figcaption>{chart}{_legend(series)}</figure>"


def _blocked_figure(t: Timeline) -> str:
    label = "Refused decisions per hour"
    chart = bar_chart("blocked-chart", label, t.start, t.hours, t.blocked)
    return f"<figure><figcaption>{escape(label)}</figcaption>{chart}</figure>"
