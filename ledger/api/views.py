"""Translations between the engine's records and the API's JSON, and the checks the engine
leaves to its callers (path ids, plan bounds). Pure functions of their arguments."""

from __future__ import annotations

from typing import Any

from ledger.api import models
from ledger.core.types import AccountBalance
from ledger.metering import (
    Completion,
    Decision,
    InvalidRequestError,
    MeteringError,
)
from ledger.metering.registry import GrantRecord
from ledger.metering.settlement import Report

"""Longest window a plan may declare over HTTP (136 years): windows and their Redis keys
compute with its length in ns and ms."""


def parse_decision_id(text: str) -> int:
    """A decision id from its decimal text (the path's pattern allows 1 to 19 digits)."""
    value = int(text)
    if value > models.ID_LARGEST:
        raise InvalidRequestError("decision_id", f"must be at most {models.ID_LARGEST}")
    return value


def decision_json(d: Decision) -> dict[str, Any]:
    return {
        "decision_id": str(d.decision_id),
        "customer": d.customer,
        "feature": d.feature,
        "key": d.key,
        "units": d.units,
        "allowed": d.allowed,
        "now": d.now,
        "plan": d.plan,
        "plan_version": d.plan_version,
        "price_version": d.price_version,
        "price": d.price,
        "cost": d.cost,
        "timeout": d.timeout,
        "parts": [
            {
                "layer": p.layer,
                "units": p.units,
                "amount": p.amount,
                "reservation_id": str(p.transfer_id) if p.transfer_id else None,
            }
            for p in d.parts
        ],
        "consulted": [{"layer": c.layer, "room": c.room, "took": c.took} for c in d.consulted],
        "reasons": [{"code": r.code, "layer": r.layer, "message": r.message} for r in d.reasons],
        "retry_after": d.retry_after,
        "unblock": [
            {"action": u.action, "amount": u.amount, "message": u.message} for u in d.unblock
        ],
        "explanation": d.explain(),
    }


def completion_json(c: Completion) -> dict[str, Any]:
    return {
        "decision_id": str(c.decision_id),
        "actual_units": c.actual_units,
        "usage_id": str(c.usage_id),
        "charges": [
            {
                "layer": x.layer,
                "units": x.units,
                "amount": x.amount,
                "monetization_id": str(x.monetization_id),
            }
            for x in c.charges
        ],
        "charged": c.charged,
        "released_units": c.released_units,
        "released_amount": c.released_amount,
        "written_off": c.written_off,
        "settled_at": c.settled_at,
    }


def grant_out(g: GrantRecord) -> models.GrantOut:
    return models.GrantOut(
        customer=g.customer,
        grant=g.grant,
        amount=g.amount,
        priority=g.priority,
        expires_at=g.expires_at,
        created_at=g.created,
        features=list(g.features) if g.features is not None else None,
    )


def usage_results(
    outcomes: list[Report | MeteringError],
) -> models.UsageBatchOut:
    from ledger.api.errors import classify

    results: list[models.UsageResultOut] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Report):
            results.append(
                models.UsageResultOut(
                    index=index,
                    status="duplicate" if outcome.duplicate else "accepted",
                    usage_id=str(outcome.usage.id),
                )
            )
            continue
        _, code, field = classify(outcome)
        error = models.ErrorDetail(code=code, message=str(outcome), field=field)
        results.append(models.UsageResultOut(index=index, status="rejected", error=error))
    count = {s: sum(r.status == s for r in results) for s in ("accepted", "duplicate", "rejected")}
    return models.UsageBatchOut(
        accepted=count["accepted"],
        duplicates=count["duplicate"],
        rejected=count["rejected"],
        results=results,
    )


HistoryRow = tuple[int, int, str, AccountBalance, int, int]


def history_rows(accounts: list[tuple[str, int, list[AccountBalance]]]) -> list[HistoryRow]:
    """(timestamp, account id, account name, balance, available, change) of every account's
    history, merged in (timestamp, account id) order: append-only, so a cursor stays valid."""
    rows: list[HistoryRow] = []
    for name, account_id, history in accounts:
        previous = 0
        for h in history:
            available = h.credits_posted - h.debits_posted - h.debits_pending
            rows.append((h.timestamp, account_id, name, h, available, available - previous))
            previous = available
    rows.sort(key=lambda r: (r[0], r[1]))
    return rows


def history_page(
    customer: str, rows: list[HistoryRow], cursor: str | None, limit: int
) -> models.HistoryOut:
    start = 0
    if cursor is not None:
        after = tuple(int(x) for x in cursor.split("_"))
        start = next((i for i, r in enumerate(rows) if (r[0], r[1]) > after), len(rows))
    page = rows[start : start + limit]
    more = start + limit < len(rows)
    entries = [
        models.HistoryEntryOut(
            account=name,
            timestamp=h.timestamp,
            debits_pending=h.debits_pending,
            debits_posted=h.debits_posted,
            credits_pending=h.credits_pending,
            credits_posted=h.credits_posted,
            available=available,
            change=change,
        )
        for _, _, name, h, available, change in page
    ]
    next_cursor = f"{page[-1][0]}_{page[-1][1]}" if more and page else None
    return models.HistoryOut(customer=customer, entries=entries, next_cursor=next_cursor)
