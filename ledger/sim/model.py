"""The metering model: what a correct access engine does, computed apart from the engine.

It keeps its own registry (plans, prices, customers, organisations, grants), its own rate
windows and allowances, its own money (every funding account's posted credits, posted debits and
live holds, and the platform accounts), and from them computes each decision (the waterfall over
the rooms it computes, all or nothing), each completion (kept units at the price locked in the
decision; the excess through the waterfall at completion time; the rest written off), each
usage report's fate and each grant sweep. The runner compares the engine's answers and the
ledger's balances with these.

It reads only plain data from the engine's world: the steps, the plans as JSON, and from the
reference ledger (an independent implementation of the ledger) when a hold's timeout has passed.
It shares no code with `ledger.metering` except `derive_id` (the contract that ids are derived
from names) and the plan JSON the world wrote.

Rules it states (DESIGN.md), and the choices it makes where DESIGN.md leaves one open:
- a decision is evaluated at max(its node's clock, the latest time seen for that customer by any
  node);
- a hold whose timeout has passed when money is read holds nothing (a completion's excess may
  spend it); a grant sweep moves what the balances show when it reads them (a hold due but not yet
  expired by the ledger is moved by a later sweep, as DESIGN.md allows);
- a window entry taken at t counts while t > now - length; an entry dropped once stays dropped
  (time per window is the latest seen); a completion takes its excess, and gives back what it did
  not use, under the terms of its decision's plan version;
- a settlement batch gives back window and allowance units after the whole batch, so one
  settlement's released units are not free for another's excess in the same batch (the engine's
  order: the batch's excesses are taken inside its transaction, the releases follow the commit).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.metering.ids import derive_id

AMOUNT_MAX = 2**63 - 1
NS = 10**9
WRITE_OFF = "write_off"

# Platform account ids (the contract's names: derive_id("platform", <code name>)).
REVENUE = derive_id("platform", "REVENUE")
WRITE_OFF_ACCOUNT = derive_id("platform", "WRITE_OFF")
BREAKAGE = derive_id("platform", "BREAKAGE")
SALES = derive_id("platform", "SALES")
PROMOTIONS = derive_id("platform", "PROMOTIONS")
FACILITY = derive_id("platform", "OVERAGE_FACILITY")


class Expected(Exception):
    """An error the engine should raise: `kind` is its class name, `detail` the field or reason."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}({detail})" if detail else kind)
        self.kind = kind
        self.detail = detail


@dataclass(slots=True)
class Money:
    """One ledger account as the model expects it."""

    credits_posted: int = 0
    debits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def available(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(slots=True)
class Hold:
    id: int
    account: int
    amount: int
    decision: int
    layer: str
    state: str = "live"  # live, posted, voided, expired


@dataclass(frozen=True, slots=True)
class MPart:
    layer: str
    units: int
    amount: int = 0
    hold: int = 0
    account: int = 0


@dataclass(slots=True)
class MDecision:
    decision_id: int
    customer: str
    feature: str
    key: str
    units: int
    timeout_override: int | None
    allowed: bool
    at: int
    plan: str
    plan_version: int
    price_version: int
    price: int
    timeout: int
    parts: tuple[MPart, ...] = ()
    reasons: tuple[str, ...] = ()


@dataclass(slots=True)
class MUsage:
    id: int
    customer: str
    key: str
    feature: str
    units: int
    occurred_at: int
    decision_id: int


@dataclass(frozen=True, slots=True)
class MCompletion:
    decision_id: int
    actual: int
    usage_id: int
    charges: tuple[tuple[str, int, int, int], ...]  # (layer, units, amount, account), sorted
    written_off: int
    transfer_ids: tuple[int, ...]  # sorted


@dataclass(slots=True)
class Grant:
    customer: str
    name: str
    account: int
    amount: int
    priority: int
    expires_at: int
    created: int
    features: tuple[str, ...] | None
    order: int


class WindowLog:
    """One window key: entries by token (time, units), what each token gave back, and the
    cutoff below which entries no longer count (the latest `now - length` seen)."""

    __slots__ = ("cutoff", "entries", "length", "limit", "released", "seen", "taken")

    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        self.entries: dict[str, tuple[int, int]] = {}
        self.released: dict[str, int] = {}
        self.cutoff = -(2**63)
        self.seen = -(2**63)
        self.taken = 0  # the limit of the terms that last took units this step (0: none)

    def access(self, now: int) -> None:
        if now - self.length > self.cutoff:
            self.cutoff = now - self.length
            for token in [t for t, (at, _) in self.entries.items() if at <= self.cutoff]:
                del self.entries[token]
                self.released.pop(token, None)
        self.seen = max(self.seen, now)

    def used(self) -> int:
        return sum(u - self.released.get(t, 0) for t, (_, u) in self.entries.items())

    def take(self, token: str, units: int, now: int) -> None:
        if units and token not in self.entries:
            self.entries[token] = (now, units)
            self.taken = self.limit

    def release(self, token: str, units: int) -> None:
        entry = self.entries.get(token)
        if entry is None:
            return
        given = min(units, entry[1] - self.released.get(token, 0))
        if given:
            self.released[token] = self.released.get(token, 0) + given


def period_bounds(now: int, period: str) -> tuple[int, int]:
    """[start, end) in ns of the UTC calendar day, ISO week or month containing `now`."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    day = epoch + timedelta(seconds=now // NS)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    if period == "day":
        end = start + timedelta(days=1)
    elif period == "week":
        start = start - timedelta(days=start.weekday())
        end = start + timedelta(days=7)
    else:
        start = datetime(day.year, day.month, 1, tzinfo=UTC)
        end = datetime(day.year + (day.month == 12), day.month % 12 + 1, 1, tzinfo=UTC)

    def ns(moment: datetime) -> int:
        delta = moment - epoch
        return (delta.days * 86400 + delta.seconds) * NS

    return ns(start), ns(end)


@dataclass(slots=True)
class _Slot:
    """A layer as one decision or excess sees it: its name, room and, for money, the account."""

    layer: str
    room: int
    account: int = 0
    window_keys: tuple[tuple[str, int], ...] = ()  # (key, weight) for windows
    allowance_key: str = ""


@dataclass(slots=True)
class Model:
    plans: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    books: list[dict[str, Any]] = field(default_factory=list)
    customers: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    orgs: dict[str, int] = field(default_factory=dict)
    grants: dict[str, list[Grant]] = field(default_factory=dict)
    money: dict[int, Money] = field(default_factory=dict)
    holds: dict[int, Hold] = field(default_factory=dict)
    decisions: dict[tuple[str, str], MDecision] = field(default_factory=dict)
    decisions_by_id: dict[int, MDecision] = field(default_factory=dict)
    completions: dict[int, MCompletion] = field(default_factory=dict)
    usage: dict[tuple[str, str], MUsage] = field(default_factory=dict)
    usage_by_id: dict[int, MUsage] = field(default_factory=dict)
    usage_by_decision: dict[int, MUsage] = field(default_factory=dict)
    outbox: dict[int, int] = field(default_factory=dict)  # usage id -> claimed until
    windows: dict[str, WindowLog] = field(default_factory=dict)
    last_seen: dict[str, int] = field(default_factory=dict)
    sales: dict[int, int] = field(default_factory=dict)  # sale transfer id -> amount
    touched_windows: set[str] = field(default_factory=set)
    given_back: set[int] = field(default_factory=set)  # by a settlement that failed to commit
    grant_count: int = 0

    def __post_init__(self) -> None:
        for account in (REVENUE, WRITE_OFF_ACCOUNT, BREAKAGE, SALES, PROMOTIONS, FACILITY):
            self.money[account] = Money()

    # -- set-up -------------------------------------------------------------------------------

    def publish_plan(self, plan_json: str) -> None:
        plan = json.loads(plan_json)
        versions = [p for p in self.plans.get(plan["plan"], []) if p["version"] != plan["version"]]
        versions.append(plan)
        versions.sort(key=lambda p: (p["effective_from"], p["version"]))
        self.plans[plan["plan"]] = versions

    def publish_prices(self, book_json: str) -> None:
        book = json.loads(book_json)
        self.books = [b for b in self.books if b["version"] != book["version"]] + [book]
        self.books.sort(key=lambda b: (b["effective_from"], b["version"]))

    def add_org(self, org: str, cap: int) -> None:
        if org in self.orgs:
            if self.orgs[org] != cap:
                raise Expected("MeteringError", "overage cap differs")
            return
        self.orgs[org] = cap
        self.money.setdefault(pool_account(org), Money())
        overage = self.money.setdefault(overage_account(org), Money())
        if cap:
            overage.credits_posted += cap
            self.money[FACILITY].debits_posted += cap

    def add_customer(self, customer: str, plan: str, org: str | None) -> None:
        if plan not in self.plans:
            raise Expected("InvalidRequestError", "plan")
        if org is not None and org not in self.orgs:
            raise Expected("InvalidRequestError", "org")
        self.customers[customer] = (plan, org)
        self.money.setdefault(credits_account(customer), Money())

    def sell(self, kind: str, owner: str, sale_id: str, amount: int) -> None:
        """A purchase (kind "purchase", owner a customer) or a pool top-up (owner an org)."""
        if kind == "purchase" and owner not in self.customers:
            raise Expected("UnknownCustomerError")
        if kind == "top_up" and owner not in self.orgs:
            raise Expected("InvalidRequestError", "org")
        transfer = derive_id(kind, f"{owner}|{sale_id}")
        if transfer in self.sales:
            if self.sales[transfer] != amount:
                raise Expected("MeteringError", "sale id reused with another amount")
            return
        self.sales[transfer] = amount
        target = credits_account(owner) if kind == "purchase" else pool_account(owner)
        self.money[target].credits_posted += amount
        self.money[SALES].debits_posted += amount

    def grant(
        self,
        customer: str,
        name: str,
        amount: int,
        expires_at: int,
        now: int,
        priority: int,
        features: tuple[str, ...] | None,
    ) -> None:
        if customer not in self.customers:
            raise Expected("UnknownCustomerError")
        if expires_at <= now:
            raise Expected("InvalidRequestError", "expires_at")
        if any(g.name == name for g in self.grants.get(customer, [])):
            return
        account = derive_id("grant", customer, name)
        self.grant_count += 1
        self.grants.setdefault(customer, []).append(
            Grant(
                customer,
                name,
                account,
                amount,
                priority,
                expires_at,
                now,
                features,
                self.grant_count,
            )
        )
        self.money[account] = Money(credits_posted=amount)
        self.money[PROMOTIONS].debits_posted += amount

    # -- terms and rooms ----------------------------------------------------------------------

    def _terms(self, plan_name: str, feature: str, at: int) -> tuple[dict[str, Any], int, int]:
        """(plan version, price-book version, price) in force at `at`, or the error."""
        in_force = [p for p in self.plans.get(plan_name, []) if p["effective_from"] <= at]
        if not in_force:
            raise Expected("InvalidRequestError", "now")
        plan = in_force[-1]
        if feature not in plan["features"]:
            raise Expected("UnknownFeatureError")
        for book in reversed(self.books):
            if book["effective_from"] <= at:
                if feature in book["prices"]:
                    return plan, book["version"], book["prices"][feature]
                break
        raise Expected("NoPriceError")

    def plan_version(self, plan_name: str, version: int) -> dict[str, Any]:
        return next(p for p in self.plans[plan_name] if p["version"] == version)

    def _window(self, key: str, length: int, limit: int, now: int) -> WindowLog:
        log = self.windows.get(key)
        if log is None:
            log = self.windows[key] = WindowLog(length, limit)
        log.length, log.limit = length, limit  # the terms in force say how long and how much
        log.access(now)
        self.touched_windows.add(key)
        return log

    def _window_terms(
        self, plan: dict[str, Any], feature: str, layer: dict[str, Any]
    ) -> list[tuple[str, str, int, int, int]]:
        """(name, scope, length ns, limit, weight) of each window of the feature's layer."""
        terms = [(w["name"], feature, w["length"] * NS, w["limit"], 1) for w in layer["windows"]]
        shared = {w["name"]: w for w in plan.get("shared_windows", [])}
        for name in layer.get("shared", []):
            w = shared[name]
            terms.append((name, "*", w["length"] * NS, w["limit"], w["weights"][feature]))
        return terms

    def _slots(
        self,
        customer: str,
        feature: str,
        plan: dict[str, Any],
        price: int,
        now: int,
        released: frozenset[int],
        adjust: dict[int, int] | None = None,
    ) -> list[_Slot]:
        """Every layer's room at `now`, in the plan's order (money slots in burn order)."""
        slots: list[_Slot] = []
        _, org = self.customers[customer]
        for layer in plan["features"][feature]["layers"]:
            kind = layer["kind"]
            if kind == "windows":
                rooms, keys = [], []
                for name, scope, length, limit, weight in self._window_terms(plan, feature, layer):
                    key = f"{customer}|{scope}|{name}"
                    used = self._window(key, length, limit, now).used()
                    rooms.append(max(0, limit - used) // weight)
                    keys.append((key, weight))
                slots.append(_Slot("windows", min(rooms), window_keys=tuple(keys)))
            elif kind == "allowance":
                start, end = period_bounds(now, layer["period"])
                key = f"{customer}|{feature}|allowance|{start}"
                used = self._window(key, end - start, layer["amount"], now).used()
                slots.append(_Slot("allowance", max(0, layer["amount"] - used), allowance_key=key))
            else:
                for name, account in self._money_slots(kind, customer, feature, org, now):
                    available = self.available(account, released) + (adjust or {}).get(account, 0)
                    slots.append(_Slot(name, max(0, available) // price, account=account))
        return slots

    def _money_slots(
        self, kind: str, customer: str, feature: str, org: str | None, now: int
    ) -> list[tuple[str, int]]:
        if kind == "grants":
            live = [
                g
                for g in self.grants.get(customer, [])
                if now < g.expires_at and (g.features is None or feature in g.features)
            ]
            live.sort(key=lambda g: (g.expires_at, g.priority, g.created, g.order))
            return [(f"grant:{g.name}", g.account) for g in live]
        if kind == "credits":
            return [("credits", credits_account(customer))]
        if org is None:
            return []
        slots = [("pool", pool_account(org))]
        if self.orgs[org]:
            slots.append(("overage", overage_account(org)))
        return slots

    def available(self, account: int, released: frozenset[int] = frozenset()) -> int:
        """Available money, counting the live holds in `released` as already expired."""
        m = self.money[account]
        extra = sum(
            h.amount
            for h in self.holds.values()
            if h.id in released and h.account == account and h.state == "live"
        )
        return m.available() + extra

    # -- decisions ----------------------------------------------------------------------------

    def decide(
        self,
        customer: str,
        feature: str,
        units: int,
        key: str,
        now: int,
        timeout: int | None,
        released: frozenset[int],
        *,
        commit: bool,
    ) -> MDecision:
        """The decision for a request (or the `Expected` error); with `commit`, record it and
        consume what it takes. `released`: live holds whose timeout had passed when the engine
        read the balances."""
        if customer not in self.customers:
            raise Expected("UnknownCustomerError")
        earlier = self.decisions.get((customer, key))
        if earlier is not None:
            for name, given, before in (
                ("feature", feature, earlier.feature),
                ("units", units, earlier.units),
                ("timeout", timeout, earlier.timeout_override),
            ):
                if given != before:
                    raise Expected("IdempotencyConflictError", name)
            return earlier
        at = max(now, self.last_seen.get(customer, 0))
        plan_name, _ = self.customers[customer]
        plan, price_version, price = self._terms(plan_name, feature, at)
        if units * price > AMOUNT_MAX:
            raise Expected("InvalidRequestError", "units")
        fp = plan["features"][feature]
        decision_id = derive_id("decision", customer, key)
        slots = self._slots(customer, feature, plan, price, at, released)
        allowed = units <= sum(s.room for s in slots)
        parts: list[MPart] = []
        left = units if allowed else 0
        for slot in slots:
            take = min(left, slot.room)
            left -= take
            if not take:
                continue
            if slot.account:
                hold = derive_id("hold", decision_id, slot.layer)
                parts.append(MPart(slot.layer, take, take * price, hold, slot.account))
            else:
                parts.append(MPart(slot.layer, take))
        decision = MDecision(
            decision_id=decision_id,
            customer=customer,
            feature=feature,
            key=key,
            units=units,
            timeout_override=timeout,
            allowed=allowed,
            at=at,
            plan=plan_name,
            plan_version=plan["version"],
            price_version=price_version,
            price=price,
            timeout=timeout if timeout is not None else fp["reservation_timeout"],
            parts=tuple(parts),
        )
        if commit:
            self._commit_decision(decision, slots)
        return decision

    def _commit_decision(self, d: MDecision, slots: list[_Slot]) -> None:
        token = str(d.decision_id)
        by_layer = {s.layer: s for s in slots}
        for part in d.parts:
            slot = by_layer[part.layer]
            for key, weight in slot.window_keys:
                self.windows[key].take(token, part.units * weight, d.at)
            if slot.allowance_key:
                self.windows[slot.allowance_key].take(token, part.units, d.at)
            if part.hold:
                self.holds[part.hold] = Hold(
                    part.hold, part.account, part.amount, d.decision_id, part.layer
                )
                self.money[part.account].debits_pending += part.amount
                self.money[REVENUE].credits_pending += part.amount
        self.decisions[(d.customer, d.key)] = d
        self.decisions_by_id[d.decision_id] = d
        self.last_seen[d.customer] = d.at

    # -- usage --------------------------------------------------------------------------------

    def report(
        self,
        customer: str,
        feature: str,
        units: int,
        key: str,
        decision_id: int,
        occurred_at: int,
    ) -> tuple[MUsage, bool]:
        """(usage event, duplicate) for a usage report, or the `Expected` rejection."""
        if customer not in self.customers:
            raise Expected("UsageRejectedError", "unknown_customer")
        d = self.decisions_by_id.get(decision_id)
        if d is None or d.customer != customer:
            raise Expected("UsageRejectedError", "unknown_decision")
        if not d.allowed:
            raise Expected("UsageRejectedError", "decision_refused")
        if d.feature != feature:
            raise Expected("UsageRejectedError", "feature_mismatch")
        usage = MUsage(
            derive_id("usage", customer, key),
            customer,
            key,
            feature,
            units,
            occurred_at,
            decision_id,
        )
        earlier = self.usage.get((customer, key))
        if earlier is not None:
            same = (earlier.feature, earlier.units, earlier.occurred_at, earlier.decision_id)
            if same == (feature, units, occurred_at, decision_id):
                return earlier, True
            raise Expected("UsageConflictError", "key_reused")
        if decision_id in self.usage_by_decision:
            raise Expected("UsageRejectedError", "decision_already_reported")
        self.usage[(customer, key)] = usage
        self.usage_by_id[usage.id] = usage
        self.usage_by_decision[decision_id] = usage
        self.outbox[usage.id] = 0
        return usage, False

    def claim(self, now: int, lease: int, limit: int) -> list[int]:
        free = sorted(i for i, until in self.outbox.items() if until <= now)[:limit]
        for usage_id in free:
            self.outbox[usage_id] = now + lease
        return free

    def pick(self, now: int, limit: int, start: int) -> list[int]:
        """What a worker picks: unleased entries by usage id from `start` on, then from the
        lowest (a read: nothing is leased)."""
        free = sorted(i for i, until in self.outbox.items() if until <= now)
        return ([i for i in free if i >= start] + [i for i in free if i < start])[:limit]

    def settle(
        self, usage_ids: Sequence[int], now: int, status: dict[int, int]
    ) -> list[MCompletion]:
        """Settle these usage events in order (those settled before are only dropped from the
        outbox). `status`: each hold's status in the reference ledger after the settlement
        (1 pending, 2 posted, 3 voided, 4 expired)."""
        done: list[MCompletion] = []
        releases: list[tuple[MDecision, str, int]] = []
        for usage_id in usage_ids:
            usage = self.usage_by_id.get(usage_id)
            if usage is None:
                continue
            self.outbox.pop(usage_id, None)
            if usage.decision_id in self.completions:
                continue
            done.append(self._settle_one(usage, now, status, releases))
        # Window and allowance units a settlement gives back return once the whole batch is
        # booked, before it commits (the batch's excesses were taken before); those a failed
        # attempt gave back already are not given back again.
        for d, layer, units in releases:
            if d.decision_id not in self.given_back:
                plan = self.plan_version(d.plan, d.plan_version)
                self._release_free(d, plan, layer, units, now, str(d.decision_id))
        self.given_back.difference_update(c.decision_id for c in done)
        return done

    def give_back_first(self, usage_ids: Sequence[int], now: int) -> None:
        """What an attempt to settle these usage events gave back before its commit failed:
        the window and allowance units their completions will not use (given back once)."""
        for usage_id in usage_ids:
            usage = self.usage_by_id.get(usage_id)
            if usage is None or usage.decision_id in self.completions:
                continue
            d = self.decisions_by_id[usage.decision_id]
            if d.decision_id in self.given_back:
                continue
            self.given_back.add(d.decision_id)
            plan = self.plan_version(d.plan, d.plan_version)
            for part, keep in zip(d.parts, _kept(d.parts, usage.units), strict=True):
                if not part.hold and part.units - keep:
                    self._release_free(
                        d, plan, part.layer, part.units - keep, now, str(d.decision_id)
                    )

    def _settle_one(
        self,
        u: MUsage,
        now: int,
        status: dict[int, int],
        releases: list[tuple[MDecision, str, int]],
    ) -> MCompletion:
        d = self.decisions_by_id[u.decision_id]
        actual = u.units
        charges: dict[str, list[int]] = {}
        ids: list[int] = []

        def charge(layer: str, units: int, amount: int, account: int) -> None:
            entry = charges.setdefault(layer, [0, 0, account])
            entry[0] += units
            entry[1] += amount

        excess = max(0, actual - sum(p.units for p in d.parts))
        kept = _kept(d.parts, actual)
        plan = self.plan_version(d.plan, d.plan_version)
        for part, keep in zip(d.parts, kept, strict=True):
            if not part.hold:
                if part.units - keep:
                    releases.append((d, part.layer, part.units - keep))
                if keep:
                    charge(part.layer, keep, 0, 0)
                continue
            hold = self.holds[part.hold]
            if status.get(part.hold) == 4 and hold.state in ("live", "expired"):
                excess += keep  # lapsed: what it would have posted goes through the waterfall
                continue
            self._resolve(hold, keep * d.price)
            ids.append(derive_id("post" if keep else "void", d.decision_id, part.layer))
            if keep:
                charge(part.layer, keep, keep * d.price, part.account)
        if excess:
            self._excess(d, plan, excess, now, charge, ids, status)
        result = MCompletion(
            decision_id=d.decision_id,
            actual=actual,
            usage_id=u.id,
            charges=tuple(sorted((k, v[0], v[1], v[2]) for k, v in charges.items())),
            written_off=charges[WRITE_OFF][1] if WRITE_OFF in charges else 0,
            transfer_ids=tuple(sorted(ids)),
        )
        self.completions[d.decision_id] = result
        return result

    def _resolve(self, hold: Hold, posted: int) -> None:
        hold.state = "posted" if posted else "voided"
        m = self.money[hold.account]
        m.debits_pending -= hold.amount
        m.debits_posted += posted
        self.money[REVENUE].credits_pending -= hold.amount
        self.money[REVENUE].credits_posted += posted

    def _excess(
        self,
        d: MDecision,
        plan: dict[str, Any],
        excess: int,
        now: int,
        charge: Any,
        ids: list[int],
        status: dict[int, int],
    ) -> None:
        expired = frozenset(h for h, s in status.items() if s == 4)
        slots = self._slots(d.customer, d.feature, plan, d.price, now, expired)
        left = excess
        token = f"{d.decision_id}:excess"
        for slot in slots:
            take = min(left, slot.room)
            left -= take
            if not take:
                continue
            for key, weight in slot.window_keys:
                self.windows[key].take(token, take * weight, now)
            if slot.allowance_key:
                self.windows[slot.allowance_key].take(token, take, now)
            if slot.account:
                amount = take * d.price
                self.money[slot.account].debits_posted += amount
                self.money[REVENUE].credits_posted += amount
                ids.append(derive_id("charge", d.decision_id, slot.layer))
                charge(slot.layer, take, amount, slot.account)
            else:
                charge(slot.layer, take, 0, 0)
        if left:
            amount = left * d.price
            self.money[WRITE_OFF_ACCOUNT].debits_posted += amount
            self.money[REVENUE].credits_posted += amount
            ids.append(derive_id("write_off", d.decision_id, WRITE_OFF))
            charge(WRITE_OFF, left, amount, WRITE_OFF_ACCOUNT)

    def _release_free(
        self,
        d: MDecision,
        plan: dict[str, Any],
        layer_kind: str,
        units: int,
        now: int,
        token: str,
    ) -> None:
        for layer in plan["features"][d.feature]["layers"]:
            if layer["kind"] != layer_kind:
                continue
            if layer_kind == "windows":
                for name, scope, length, limit, weight in self._window_terms(
                    plan, d.feature, layer
                ):
                    key = f"{d.customer}|{scope}|{name}"
                    self._window(key, length, limit, now).release(token, units * weight)
            else:
                start, end = period_bounds(now, layer["period"])
                key = f"{d.customer}|{d.feature}|allowance|{start}"
                self._window(key, end - start, layer["amount"], now).release(token, units)

    def complete(
        self,
        decision_id: int,
        actual: int,
        now: int,
        status: dict[int, int],
        *,
        gave_back_first: bool = False,
    ) -> MCompletion:
        """`gave_back_first`: a settling attempt gave back before its commit failed."""
        d = self.decisions_by_id.get(decision_id)
        if d is None or not d.allowed:
            raise Expected("UnknownDecisionError")
        prior = self.completions.get(decision_id)
        if prior is None:
            usage = self.usage_by_decision.get(decision_id)
            if usage is None:
                usage, _ = self.report(
                    d.customer,
                    d.feature,
                    actual,
                    f"complete-{decision_id}",
                    decision_id,
                    max(now, d.at),
                )
            if usage.units == actual:
                if gave_back_first:
                    self.give_back_first([usage.id], now)
                self.settle([usage.id], now, status)
            prior = self.completions.get(decision_id)
            if prior is None:
                raise Expected("CompletionConflictError")
        if prior.actual != actual:
            raise Expected("CompletionConflictError")
        return prior

    # -- grants and expiry --------------------------------------------------------------------

    def expire_grants(self, now: int) -> list[tuple[int, int]]:
        """(grant account, amount) moved to breakage: what each expired grant still has."""
        moved = []
        for customer in sorted(self.grants):
            for g in self.grants[customer]:
                if g.expires_at <= now:
                    available = self.money[g.account].available()
                    if available > 0:
                        moved.append((g.account, available))
        for account, amount in moved:
            self.money[account].debits_posted += amount
            self.money[BREAKAGE].credits_posted += amount
        return sorted(moved)

    def absorb_expiries(self, status: dict[int, int]) -> list[str]:
        """Holds the reference ledger expired: their money is free again. A live hold that the
        ledger resolved without a completion is a problem."""
        problems = []
        for hold in self.live_holds():
            s = status.get(hold.id, 1)
            if s == 4:
                hold.state = "expired"
                self.money[hold.account].debits_pending -= hold.amount
                self.money[REVENUE].credits_pending -= hold.amount
            elif s != 1:
                problems.append(
                    f"hold {hold.id} ({hold.layer} of decision {hold.decision}) was "
                    f"{'posted' if s == 2 else 'voided'} in the ledger without a completion"
                )
        return problems

    def live_holds(self) -> list[Hold]:
        return [h for h in self.holds.values() if h.state == "live"]

    def grant_accounts(self) -> Iterable[int]:
        for customer in sorted(self.grants):
            for g in self.grants[customer]:
                yield g.account


def _kept(parts: Sequence[MPart], actual: int) -> list[int]:
    """Units each part keeps when `actual` were used: the unused are given back from the last
    part first (money is voided before window room is returned)."""
    release = max(0, sum(p.units for p in parts) - actual)
    kept = []
    for part in reversed(parts):
        give = min(release, part.units)
        kept.append(part.units - give)
        release -= give
    return kept[::-1]


def credits_account(customer: str) -> int:
    return derive_id("credits", customer)


def pool_account(org: str) -> int:
    return derive_id("pool", org)


def overage_account(org: str) -> int:
    return derive_id("overage", org)
