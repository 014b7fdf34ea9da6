"""The HTTP API's request and response bodies.

Requests are strict (`strict=True, extra="forbid", frozen=True`): an integer field refuses a
float, a string and a boolean; a missing or unknown field is an error that names it. Every
number has the engine's bounds, so a value the engine would refuse is refused here first.

Ids (decisions, transfers, usage and monetization events) are 63-bit integers: they travel as
decimal strings so that JavaScript clients do not round them. Money (micro-credits) and units
are JSON integers up to 2^63 - 1 and 10^12; a JavaScript client should read money with BigInt
once a balance may pass 2^53 micro-credits (9 billion credits).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from ledger.core.limits import AMOUNT_MAX, ID_MAX, TIMEOUT_MAX_SECONDS
from ledger.metering.meter import UNITS_MAX
from ledger.metering.plans import Plan, PriceBook

_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
_OUT = ConfigDict(frozen=True)

NAME_PATTERN = r"^[A-Za-z0-9_.:@+=~-]{1,128}$"
"""Customers, organisations, grants, purchase and top-up ids, idempotency and usage keys:
1 to 128 of these characters (safe in a URL path, never the engine's separator `|`)."""
FEATURE_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
"""Features and plan names, as plans declare them."""
ID_PATTERN = r"^[1-9][0-9]{0,18}$"
ID_LARGEST = ID_MAX - 1
INT64_MAX = 2**63 - 1
BATCH_EVENTS_MAX = 1000
HISTORY_LIMIT_MAX = 1000

Name = Annotated[str, Field(pattern=NAME_PATTERN, examples=["alice"])]
Feature = Annotated[str, Field(pattern=FEATURE_PATTERN, examples=["codex.task"])]


def _id_in_range(text: str) -> str:
    if int(text) > ID_LARGEST:
        raise ValueError(f"must be at most {ID_LARGEST}")
    return text


IdText = Annotated[
    str, Field(pattern=ID_PATTERN, examples=["4611686018427387904"]), AfterValidator(_id_in_range)
]
Units = Annotated[int, Field(ge=1, le=UNITS_MAX)]
UnitsOrZero = Annotated[int, Field(ge=0, le=UNITS_MAX)]
Amount = Annotated[int, Field(ge=1, le=AMOUNT_MAX)]
AmountOrZero = Annotated[int, Field(ge=0, le=AMOUNT_MAX)]
Nanoseconds = Annotated[int, Field(ge=0, le=INT64_MAX)]


# --- requests -----------------------------------------------------------------------------------


class DecideIn(BaseModel):
    """Ask for `units` of `feature` for `customer`. The same key returns the same decision."""

    model_config = _STRICT
    customer: Name
    feature: Feature
    units: Units
    idempotency_key: Name
    timeout: Annotated[int, Field(ge=1, le=TIMEOUT_MAX_SECONDS)] | None = Field(
        default=None, description="Reservation timeout in seconds (default: the plan's)."
    )


class CompleteIn(BaseModel):
    """The units the decision actually used (0 releases everything)."""

    model_config = _STRICT
    actual_units: UnitsOrZero


class UsageEventIn(BaseModel):
    model_config = _STRICT
    customer: Name
    feature: Feature
    units: UnitsOrZero
    key: Name
    decision_id: IdText
    occurred_at: Nanoseconds = Field(description="When it happened, ns since the epoch.")


class UsageBatchIn(BaseModel):
    model_config = _STRICT
    events: list[UsageEventIn] = Field(min_length=1, max_length=BATCH_EVENTS_MAX)


class OrgIn(BaseModel):
    model_config = _STRICT
    org: Name
    overage_cap: AmountOrZero = 0


class CustomerIn(BaseModel):
    model_config = _STRICT
    customer: Name
    plan: Feature = Field(description="A published plan's name.")
    org: Name | None = None


class PurchaseIn(BaseModel):
    model_config = _STRICT
    purchase_id: Name
    amount: Amount = Field(description="Micro-credits bought.")


class TopUpIn(BaseModel):
    model_config = _STRICT
    top_up_id: Name
    amount: Amount


class GrantIn(BaseModel):
    model_config = _STRICT
    grant: Name
    amount: Amount
    expires_at: Amount = Field(description="ns since the epoch; serves decisions before it.")
    priority: Annotated[int, Field(ge=0, le=2**31)] = 0
    features: list[Feature] | None = Field(default=None, min_length=1, max_length=64)


class KeyIn(BaseModel):
    model_config = _STRICT
    role: Literal["service", "admin", "auditor", "customer"]
    customer: Name | None = None


# --- responses ----------------------------------------------------------------------------------


class ErrorDetail(BaseModel):
    model_config = _OUT
    code: str = Field(examples=["unknown_customer"])
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    model_config = _OUT
    error: ErrorDetail


class PartOut(BaseModel):
    model_config = _OUT
    layer: str
    units: int
    amount: int = Field(description="Micro-credits held (0 for windows and allowance).")
    reservation_id: str | None = Field(description="The pending transfer holding the amount.")


class ConsultedOut(BaseModel):
    model_config = _OUT
    layer: str
    room: int
    took: int


class ReasonOut(BaseModel):
    model_config = _OUT
    code: str
    layer: str
    message: str


class UnblockOut(BaseModel):
    model_config = _OUT
    action: str
    amount: int
    message: str


class DecisionOut(BaseModel):
    model_config = _OUT
    decision_id: str
    customer: str
    feature: str
    key: str
    units: int
    allowed: bool
    now: int
    plan: str
    plan_version: int
    price_version: int
    price: int
    cost: int = Field(description="The most the customer may be charged, micro-credits.")
    timeout: int
    parts: list[PartOut]
    consulted: list[ConsultedOut]
    reasons: list[ReasonOut]
    retry_after: int | None = Field(description="ns to wait (null: waiting never suffices).")
    unblock: list[UnblockOut]
    explanation: str


class ChargeOut(BaseModel):
    model_config = _OUT
    layer: str
    units: int
    amount: int
    monetization_id: str


class CompletionOut(BaseModel):
    model_config = _OUT
    decision_id: str
    actual_units: int
    usage_id: str
    charges: list[ChargeOut]
    charged: int
    released_units: int
    released_amount: int
    written_off: int
    settled_at: int = Field(
        description="ns since the epoch the settlement ran at; 0 if settled before it was kept"
    )


class UsageResultOut(BaseModel):
    model_config = _OUT
    index: int
    status: Literal["accepted", "duplicate", "rejected"]
    usage_id: str | None = None
    error: ErrorDetail | None = None


class UsageBatchOut(BaseModel):
    model_config = _OUT
    accepted: int
    duplicates: int
    rejected: int
    results: list[UsageResultOut]


class PlanListOut(BaseModel):
    model_config = _OUT
    plans: list[Plan]


class PriceBookListOut(BaseModel):
    model_config = _OUT
    price_books: list[PriceBook]


class OrgOut(BaseModel):
    model_config = _OUT
    org: str
    overage_cap: int


class CustomerOut(BaseModel):
    model_config = _OUT
    customer: str
    plan: str
    org: str | None


class GrantOut(BaseModel):
    model_config = _OUT
    customer: str
    grant: str
    amount: int
    priority: int
    expires_at: int
    created_at: int
    features: list[str] | None


class FundsOut(BaseModel):
    """A purchase or top-up: what was credited and what is now available."""

    model_config = _OUT
    owner: str
    id: str
    amount: int
    available: int


class BalancesOut(BaseModel):
    model_config = _OUT
    customer: str
    balances: dict[str, int] = Field(
        description='Available micro-credits per source: "credits", "grant:<id>", "pool", ...'
    )
    total: int


class HistoryEntryOut(BaseModel):
    model_config = _OUT
    account: str = Field(description='"credits" or "grant:<id>".')
    timestamp: int
    debits_pending: int
    debits_posted: int
    credits_pending: int
    credits_posted: int
    available: int
    change: int = Field(description="available minus the account's previous entry's.")


class HistoryOut(BaseModel):
    model_config = _OUT
    customer: str
    entries: list[HistoryEntryOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")


class SettlementOut(BaseModel):
    model_config = _OUT
    settled: int
    grants_expired: int
    backlog: int
    oldest_unsettled_at: int | None


class BacklogOut(BaseModel):
    model_config = _OUT
    backlog: int
    oldest_unsettled_at: int | None
    lag_ns: int


class KeyOut(BaseModel):
    model_config = _OUT
    key: str = Field(description="Shown once; only its SHA-256 is stored.")
    key_id: str
    role: str
    customer: str | None


class UnsettledOut(BaseModel):
    model_config = _OUT
    count: int
    oldest_occurred_at: int | None


class AuditOut(BaseModel):
    model_config = _OUT
    ok: bool
    counts: dict[str, int]
    totals: dict[str, int]
    unsettled: UnsettledOut
    hash_chain_ok: bool
    checks: list[str]
    discrepancies: list[str]
    seconds: float


class StatusOut(BaseModel):
    model_config = _OUT
    status: str
