"""The endpoints. Each is a thin shell: check what the engine cannot (path ids, plan bounds),
call the meter with the server's `now`, translate the result. Errors go to ledger.api.errors.

| method | path | roles |
|---|---|---|
| POST | /v1/decisions | service |
| GET | /v1/decisions/{decision_id} | service, admin, auditor |
| POST | /v1/decisions/{decision_id}/complete | service |
| POST | /v1/usage | service |
| POST / GET | /v1/plans | admin / admin, auditor |
| POST / GET | /v1/price-books | admin / admin, auditor |
| POST | /v1/orgs, /v1/orgs/{org}/top-ups | admin |
| POST | /v1/customers, /v1/customers/{customer}/grants, .../purchases | admin |
| GET | /v1/customers/{customer} | admin, auditor, the customer's read token |
| GET | /v1/customers/{customer}/balances | service, admin, auditor, the customer's token |
| GET | /v1/customers/{customer}/history | admin, auditor, the customer's read token |
| GET | /v1/audit, /v1/settlement | admin, auditor |
| POST | /v1/settlement/run, /v1/keys | admin |
| GET | /healthz, /readyz, /metrics, /openapi.json, /docs | anyone |
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from ledger.api import models
from ledger.api.auth import Principal, check_role, create_api_key, key_hash
from ledger.api.deps import (
    ADMIN,
    ERRORS,
    LEAN,
    READ,
    READ_BALANCES,
    READ_DECISIONS,
    READ_OWN,
    SERVICE,
    SERVICE_ONLY,
    CustomerPath,
    DecisionPath,
    FastJSON,
    LeanRoute,
    OrgPath,
    Service,
    Svc,
    refuse_unknown_query,
    strict_body,
    the_service,
)
from ledger.api.errors import ApiError
from ledger.api.errors import body as error_body
from ledger.api.metrics import CONTENT_TYPE
from ledger.api.views import (
    completion_json,
    decision_json,
    grant_out,
    history_page,
    history_rows,
    parse_decision_id,
    usage_results,
)
from ledger.api.worker import run_pass, worker_name
from ledger.metering import DecideRequest, InvalidRequestError, Plan, PriceBook
from ledger.metering import accounts as acc
from ledger.metering.audit import audit as run_audit

router = APIRouter(responses=ERRORS, route_class=LeanRoute)
HISTORY_CURSOR = r"^[0-9]{1,19}_[0-9]{1,19}$"

# --- decisions and usage ------------------------------------------------------------------------


@router.post("/v1/decisions", response_model=models.DecisionOut, tags=["decisions"])
async def decide(body: models.DecideIn, svc: Svc, _: Principal = SERVICE) -> Response:
    """One definitive decision. The same `idempotency_key` (per customer) returns the same
    decision and consumes once; a refusal is a decision too (`allowed: false`, with reasons,
    `retry_after` and `unblock`)."""
    return await decision_response(svc, body)


async def decision_response(svc: Service, body: models.DecideIn) -> Response:
    now = svc.clock()
    d = await svc.decide(
        DecideRequest(
            body.customer, body.feature, body.units, body.idempotency_key, now, body.timeout
        )
    )
    if d.now >= now:  # a replay returns the earlier decision, stamped before `now`
        svc.metrics.decision(d)
    return FastJSON(decision_json(d))


async def decide_lean(request: Request) -> Response:
    """`decide` without FastAPI's dependency solving (see LeanRoute): auth, then the body."""
    refused = SERVICE_ONLY.refusal(request)[1]
    if refused is not None:
        raise refused
    refuse_unknown_query(request)
    body = await strict_body(request, models.DecideIn)
    return await decision_response(the_service(request), body)


LEAN[decide] = decide_lean


@router.get("/v1/decisions/{decision_id}", response_model=models.DecisionOut, tags=["decisions"])
async def get_decision(
    decision_id: DecisionPath, svc: Svc, _: Principal = READ_DECISIONS
) -> Response:
    d = svc.meter.decision(parse_decision_id(decision_id))
    if d is None:
        raise ApiError(404, "unknown_decision", "no decision has this id", "decision_id")
    return FastJSON(decision_json(d))


@router.post(
    "/v1/decisions/{decision_id}/complete",
    response_model=models.CompletionOut,
    tags=["decisions"],
)
async def complete(
    decision_id: DecisionPath, body: models.CompleteIn, svc: Svc, _: Principal = SERVICE
) -> Response:
    """Settle an allowed decision now with the units actually used: post up to what was held,
    void the rest, charge an excess through the waterfall and write off what nothing covers.
    The same actual again returns the same completion; a different one is a 409."""
    number = parse_decision_id(decision_id)
    before = svc.meter.completion(number)
    c = svc.meter.complete(number, body.actual_units, svc.clock())
    if before is None:
        svc.metrics.completion(c)
    return FastJSON(completion_json(c))


@router.post("/v1/usage", response_model=models.UsageBatchOut, tags=["usage"])
async def report_usage(
    body: models.UsageBatchIn, svc: Svc, _: Principal = SERVICE
) -> models.UsageBatchOut:
    """Record what decisions actually used, durably, in one transaction; the settlement worker
    turns it into money. Each event gets its own outcome: accepted, duplicate (same key and
    body as before: nothing written) or rejected (the reason, recorded for the audit)."""
    reports = [
        {
            "customer": e.customer,
            "feature": e.feature,
            "units": e.units,
            "key": e.key,
            "decision_id": parse_decision_id(e.decision_id),
            "occurred_at": e.occurred_at,
        }
        for e in body.events
    ]
    return usage_results(svc.meter.report_usage_batch(reports, svc.clock()))


# --- plans and price books ----------------------------------------------------------------------


@router.post("/v1/plans", response_model=Plan, tags=["plans"])
async def publish_plan(plan: Plan, svc: Svc, _: Principal = ADMIN) -> Plan:
    """Publish a plan version (the same name and version replaces it)."""
    svc.meter.publish_plan(plan)
    return plan


@router.get("/v1/plans", response_model=models.PlanListOut, tags=["plans"])
async def list_plans(svc: Svc, _: Principal = READ) -> models.PlanListOut:
    """Every published version of every plan."""
    plans = [p for name in sorted(svc.meter.registry.plans) for p in svc.meter.registry.plans[name]]
    return models.PlanListOut(plans=plans)


@router.post("/v1/price-books", response_model=PriceBook, tags=["plans"])
async def publish_prices(book: PriceBook, svc: Svc, _: Principal = ADMIN) -> PriceBook:
    """Publish a price book version (the same version replaces it)."""
    svc.meter.publish_prices(book)
    return book


@router.get("/v1/price-books", response_model=models.PriceBookListOut, tags=["plans"])
async def list_prices(svc: Svc, _: Principal = READ) -> models.PriceBookListOut:
    return models.PriceBookListOut(price_books=list(svc.meter.registry.books))


# --- organisations and customers ----------------------------------------------------------------


@router.post("/v1/orgs", response_model=models.OrgOut, tags=["customers"])
async def add_org(body: models.OrgIn, svc: Svc, _: Principal = ADMIN) -> models.OrgOut:
    """Register an organisation (its pool, and overage room up to `overage_cap`)."""
    svc.meter.add_org(body.org, svc.clock(), overage_cap=body.overage_cap)
    return models.OrgOut(org=body.org, overage_cap=body.overage_cap)


@router.post("/v1/orgs/{org}/top-ups", response_model=models.FundsOut, tags=["funds"])
async def top_up(
    org: OrgPath, body: models.TopUpIn, svc: Svc, _: Principal = ADMIN
) -> models.FundsOut:
    """Credit an organisation's pool; the same `top_up_id` credits once."""
    if org not in svc.meter.registry.orgs:
        raise ApiError(404, "unknown_org", f"unknown organisation {org!r}; add it first", "org")
    svc.meter.top_up_pool(org, body.amount, body.top_up_id, svc.clock())
    [pool] = svc.meter.store.lookup_accounts([acc.pool_account(org)])
    return models.FundsOut(
        owner=org, id=body.top_up_id, amount=body.amount, available=pool.available
    )


@router.post("/v1/customers", response_model=models.CustomerOut, tags=["customers"])
async def add_customer(
    body: models.CustomerIn, svc: Svc, _: Principal = ADMIN
) -> models.CustomerOut:
    """Register a customer on a published plan (again: move it to another plan or org)."""
    svc.meter.add_customer(body.customer, body.plan, svc.clock(), org=body.org)
    return models.CustomerOut(customer=body.customer, plan=body.plan, org=body.org)


@router.get("/v1/customers/{customer}", response_model=models.CustomerOut, tags=["customers"])
async def get_customer(
    customer: CustomerPath, svc: Svc, _: Principal = READ_OWN
) -> models.CustomerOut:
    svc.meter.balances(customer)  # UnknownCustomerError (404) for an unknown customer
    record = svc.meter.registry.customers[customer]
    return models.CustomerOut(customer=customer, plan=record.plan, org=record.org)


@router.post("/v1/customers/{customer}/grants", response_model=models.GrantOut, tags=["funds"])
async def grant(
    customer: CustomerPath, body: models.GrantIn, svc: Svc, _: Principal = ADMIN
) -> models.GrantOut:
    """A promotional grant of `amount` micro-credits serving decisions before `expires_at`.
    The same grant id again returns the grant; with different terms it is a 409."""
    record = svc.meter.grant(
        customer,
        body.grant,
        body.amount,
        body.expires_at,
        svc.clock(),
        priority=body.priority,
        features=body.features,
    )
    return grant_out(record)


@router.post("/v1/customers/{customer}/purchases", response_model=models.FundsOut, tags=["funds"])
async def purchase(
    customer: CustomerPath, body: models.PurchaseIn, svc: Svc, _: Principal = ADMIN
) -> models.FundsOut:
    """Credit purchased micro-credits; the same `purchase_id` credits once (with another
    amount it is a 409)."""
    svc.meter.purchase(customer, body.amount, body.purchase_id, svc.clock())
    available = svc.meter.balances(customer)["credits"]
    return models.FundsOut(
        owner=customer, id=body.purchase_id, amount=body.amount, available=available
    )


@router.get("/v1/customers/{customer}/balances", response_model=models.BalancesOut, tags=["funds"])
async def balances(
    customer: CustomerPath, svc: Svc, _: Principal = READ_BALANCES
) -> models.BalancesOut:
    """Available micro-credits per money source (held reservations are not available)."""
    found = svc.meter.balances(customer)
    return models.BalancesOut(customer=customer, balances=found, total=sum(found.values()))


@router.get("/v1/customers/{customer}/history", response_model=models.HistoryOut, tags=["funds"])
async def history(
    customer: CustomerPath,
    svc: Svc,
    limit: Annotated[int, Query(ge=1, le=models.HISTORY_LIMIT_MAX)] = 100,
    cursor: Annotated[str | None, Query(pattern=HISTORY_CURSOR)] = None,
    _: Principal = READ_OWN,
) -> models.HistoryOut:
    """The customer's balance after each change of its credits and grant accounts, oldest
    first, `limit` per page; `next_cursor` (null on the last page) fetches the next."""
    svc.meter.balances(customer)  # UnknownCustomerError (404) for an unknown customer
    meter = svc.meter
    accounts = [("credits", acc.customer_account(customer))]
    accounts += [
        (f"grant:{g.grant}", g.account_id) for g in meter.registry.grants.get(customer, [])
    ]
    rows = history_rows([(n, i, meter.store.account_history(i)) for n, i in accounts])
    return history_page(customer, rows, cursor, limit)


# --- settlement, audit, keys --------------------------------------------------------------------


@router.get("/v1/settlement", response_model=models.BacklogOut, tags=["settlement"])
async def backlog(svc: Svc, _: Principal = READ) -> models.BacklogOut:
    count, oldest = svc.meter.backlog()
    now = svc.clock()
    svc.metrics.settlement(count, oldest, now)
    lag = 0 if oldest is None else max(0, now - oldest)
    return models.BacklogOut(backlog=count, oldest_unsettled_at=oldest, lag_ns=lag)


@router.post("/v1/settlement/run", response_model=models.SettlementOut, tags=["settlement"])
async def settle_now(svc: Svc, _: Principal = ADMIN) -> models.SettlementOut:
    """Settle what is waiting now (up to 50,000 events) and sweep expired grants to breakage;
    `tollgate serve` also does this in the background."""
    done = run_pass(svc.meter, svc.metrics, worker_name(), svc.clock, batches=100)
    return models.SettlementOut(
        settled=done.settled,
        grants_expired=done.grants_expired,
        backlog=done.backlog,
        oldest_unsettled_at=done.oldest_unsettled_at,
    )


@router.get("/v1/audit", response_model=models.AuditOut, tags=["audit"])
async def audit(svc: Svc, _: Principal = READ) -> Response:
    """Evaluate every invariant on the data, verify the hash chain, reconcile the datasets."""
    report = run_audit(svc.meter.store, svc.meter.tables)
    return FastJSON(report.to_json())


@router.post("/v1/keys", response_model=models.KeyOut, tags=["keys"])
async def create_key(body: models.KeyIn, svc: Svc, _: Principal = ADMIN) -> models.KeyOut:
    """Make an API key (or, with role `customer`, a read token for that customer). The key is
    in this response only; the server keeps its SHA-256."""
    try:
        role = check_role(body.role, body.customer)
    except ValueError as exc:
        raise InvalidRequestError("customer", str(exc)) from exc
    key = create_api_key(svc.meter, role.value, svc.clock(), body.customer)
    principal = Principal(key_hash(key)[:12], role, body.customer)
    svc.keyring.add(key, principal)
    return models.KeyOut(key=key, key_id=principal.key_id, role=role.value, customer=body.customer)


# --- health and metrics (no key needed) ---------------------------------------------------------


@router.get("/healthz", response_model=models.StatusOut, tags=["health"])
async def healthz() -> models.StatusOut:
    """The process answers."""
    return models.StatusOut(status="ok")


@router.get(
    "/readyz",
    response_model=models.StatusOut,
    tags=["health"],
    responses={503: {"model": models.ErrorOut, "description": "A backend does not answer"}},
)
async def readyz(svc: Svc) -> Response:
    """The store (and the rate-window store) answer a read."""
    meter = svc.meter
    try:
        meter.store.read(lambda cur: cur.execute("SELECT 1") if cur is not None else None)
        meter.windows.used([("readyz|probe", 10**9)], svc.clock())
    except Exception:
        return FastJSON(
            error_body("not_ready", "the database or the window store does not answer"), 503
        )
    return FastJSON({"status": "ready"})


@router.get("/metrics", include_in_schema=False)
async def metrics(svc: Svc) -> Response:
    count, oldest = svc.meter.backlog()
    svc.metrics.settlement(count, oldest, svc.clock())
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)
