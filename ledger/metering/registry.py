"""What the access engine remembers besides the ledger: plans, price books, customers,
organisations, grants and decisions. `MemoryRegistry` keeps them in this process."""

from __future__ import annotations

import json
from dataclasses import dataclass

from ledger.metering.decision import Decision
from ledger.metering.errors import NoPriceError, UnknownFeatureError
from ledger.metering.plans import FeaturePlan, Plan, PriceBook


@dataclass(slots=True)
class CustomerRecord:
    customer: str
    plan: str
    org: str | None
    last_seen: int = 0


@dataclass(frozen=True, slots=True)
class OrgRecord:
    org: str
    overage_cap: int


@dataclass(frozen=True, slots=True)
class GrantRecord:
    """A promotional grant; burnt by (expires_at, priority, created), serving now < expires_at."""

    customer: str
    grant: str
    account_id: int
    amount: int
    priority: int
    expires_at: int
    created: int
    features: tuple[str, ...] | None

    def serves(self, feature: str, now: int) -> bool:
        return now < self.expires_at and (self.features is None or feature in self.features)

    @property
    def burn_order(self) -> tuple[int, int, int]:
        return (self.expires_at, self.priority, self.created)


DECISIONS_CACHED = 100_000
"""Decisions a meter on a SQL database keeps in front of the tables (the recent ones)."""


class MemoryRegistry:
    def __init__(self) -> None:
        self.plans: dict[str, list[Plan]] = {}
        self.books: list[PriceBook] = []
        self.customers: dict[str, CustomerRecord] = {}
        self.orgs: dict[str, OrgRecord] = {}
        self.grants: dict[str, list[GrantRecord]] = {}
        self.decisions: dict[tuple[str, str], Decision] = {}
        self.decisions_by_id: dict[int, Decision] = {}

    def add_plan(self, plan: Plan) -> None:
        versions = [p for p in self.plans.get(plan.plan, []) if p.version != plan.version]
        versions.append(plan)
        versions.sort(key=lambda p: (p.effective_from, p.version))
        self.plans[plan.plan] = versions

    def plan_at(self, name: str, now: int) -> Plan | None:
        """The version in force at `now`: the latest effective_from <= now (then the highest)."""
        in_force = [p for p in self.plans.get(name, []) if p.effective_from <= now]
        return in_force[-1] if in_force else None

    def add_book(self, book: PriceBook) -> None:
        self.books = [b for b in self.books if b.version != book.version] + [book]
        self.books.sort(key=lambda b: (b.effective_from, b.version))

    def price_at(self, feature: str, now: int) -> tuple[int, int]:
        """(price-book version, micro-credits per unit) in force at `now`."""
        for book in reversed(self.books):
            if book.effective_from <= now:
                if feature in book.prices:
                    return book.version, book.prices[feature]
                break
        raise NoPriceError(f"no price for feature {feature!r} is in force at {now}")

    def feature(self, plan: Plan, feature: str) -> FeaturePlan:
        fp = plan.features.get(feature)
        if fp is None:
            raise UnknownFeatureError(
                f"plan {plan.plan!r} v{plan.version} has no feature {feature!r}; "
                f"it has {sorted(plan.features)}"
            )
        return fp

    def grants_for(self, customer: str, feature: str, now: int) -> list[GrantRecord]:
        live = [g for g in self.grants.get(customer, []) if g.serves(feature, now)]
        return sorted(live, key=lambda g: g.burn_order)

    def add_grant(self, grant: GrantRecord) -> None:
        self.grants.setdefault(grant.customer, []).append(grant)

    def put_decision(self, decision: Decision) -> None:
        """Cache a decision stored in the SQL tables; the oldest cached leave past
        DECISIONS_CACHED, so a long-running server does not keep every decision in memory."""
        self.decisions[(decision.customer, decision.key)] = decision
        self.decisions_by_id[decision.decision_id] = decision
        if len(self.decisions_by_id) > DECISIONS_CACHED:
            oldest = next(iter(self.decisions_by_id.values()))
            del self.decisions_by_id[oldest.decision_id]
            self.decisions.pop((oldest.customer, oldest.key), None)


def record_json(record: CustomerRecord | OrgRecord | GrantRecord) -> str:
    body = {name: getattr(record, name) for name in record.__slots__}
    return json.dumps(body, separators=(",", ":"))


def customer_from_json(text: str) -> CustomerRecord:
    return CustomerRecord(**json.loads(text))


def org_from_json(text: str) -> OrgRecord:
    return OrgRecord(**json.loads(text))


def grant_from_json(text: str) -> GrantRecord:
    body = json.loads(text)
    features = body.pop("features")
    return GrantRecord(**body, features=None if features is None else tuple(features))
