"""The access engine's shell: `Meter.decide` and `Meter.complete` over a ledger store and a
window store. It reads state, calls the pure waterfall, and writes what it decided: window
entries (one atomic take) and reservations (one linked chain of pending transfers), so a decision
is all or nothing. Retries are safe: every id is derived from the customer and the key.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, NamedTuple

from ledger.core.flags import TransferFlags
from ledger.core.limits import AMOUNT_MAX, ID_MAX, TIMEOUT_MAX_SECONDS
from ledger.core.results import Result
from ledger.core.types import Account, Transfer
from ledger.metering import accounts as acc
from ledger.metering import settlement
from ledger.metering.accounts import Code, TransferCode
from ledger.metering.allocate import allocate_units
from ledger.metering.calendar import period_bounds
from ledger.metering.decision import Completion, Consulted, Decision, Part, Reason, Unblock
from ledger.metering.errors import (
    GrantConflictError,
    IdempotencyConflictError,
    InvalidRequestError,
    MeteringError,
    UnknownCustomerError,
)
from ledger.metering.ids import derive_id
from ledger.metering.plans import (
    AllowanceLayer,
    FeaturePlan,
    Plan,
    PriceBook,
    WindowsLayer,
)
from ledger.metering.registry import (
    CustomerRecord,
    GrantRecord,
    MemoryRegistry,
    OrgRecord,
    customer_from_json,
    grant_from_json,
    org_from_json,
    record_json,
)
from ledger.metering.restore import restore_windows
from ledger.metering.tables import Cursor, MemoryTables, tables_for
from ledger.metering.terms import Terms, compile_terms, locked_terms
from ledger.metering.waterfall import (
    AllowanceView,
    MoneyView,
    WindowView,
    credits_to_buy,
    money_kind,
    refusal_reasons,
    retry_after,
)
from ledger.metering.windows import MemoryWindows, WindowKeep, WindowStore, WindowTake
from ledger.store.base import Rollback, Store, Then, TxView

UNITS_MAX = 10**12
KEY_MAX = 128
_ATTEMPTS = 5
_HOLD = int(TransferFlags.PENDING)
_LINKED = int(TransferFlags.LINKED)
_SETTLED = (Result.OK, Result.EXISTS)


class ConcurrentChangeError(MeteringError):
    """Balances kept changing under the decision; nothing was consumed. Retry the request."""


def check_count(field: str, value: object, minimum: int, maximum: int) -> int:
    if type(value) is not int:
        raise InvalidRequestError(field, f"must be an integer, not {type(value).__name__}")
    if not minimum <= value <= maximum:
        raise InvalidRequestError(field, f"must be between {minimum} and {maximum}, not {value}")
    return value


def check_name(field: str, value: object) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= KEY_MAX:
        raise InvalidRequestError(field, f"must be a string of 1 to {KEY_MAX} characters")
    if "|" in value or not value.isprintable():
        raise InvalidRequestError(field, "must be printable and must not contain '|'")
    return value


class _Request(NamedTuple):
    customer: CustomerRecord
    feature: str
    units: int
    key: str
    now: int
    terms: Terms
    timeout: int
    decision_id: int
    timeout_override: int | None = None

    @property
    def plan(self) -> Plan:
        return self.terms.plan

    @property
    def fp(self) -> FeaturePlan:
        return self.terms.fp

    @property
    def price(self) -> int:
        return self.terms.price


class DecideRequest(NamedTuple):
    """The arguments of one `Meter.decide` call, for `Meter.decide_many`."""

    customer: str
    feature: str
    units: int
    key: str
    now: int
    timeout: int | None = None


def _check_request(q: DecideRequest) -> None:
    check_count("units", q.units, 1, UNITS_MAX)
    check_name("idempotency_key", q.key)
    check_count("now", q.now, 0, AMOUNT_MAX)
    if q.timeout is not None:
        check_count("timeout", q.timeout, 1, TIMEOUT_MAX_SECONDS)


@dataclasses.dataclass(slots=True)
class _Batch:
    """A `decide_many` batch (on a shared database `decide` makes a batch of one): decisions
    known under its keys (read up front on a shared database, or made in the batch), the
    customers' latest times, and the decisions made but not yet written."""

    earlier: dict[tuple[str, str], Decision]
    latest: dict[str, int]
    unwritten: list[tuple[_Request, Decision]] = dataclasses.field(default_factory=list)


class Meter:
    """Decisions and completions for the customers of one deployment.

    `store` holds the money (any `Store`); `windows` the rate windows and allowances
    (`RedisWindows` to share them between processes, used as given). Without `windows` the
    meter keeps its own `MemoryWindows` and starts them from what the tables recorded
    (`ledger.metering.restore`), so a restarted process still counts what was taken.
    """

    def __init__(self, store: Store, windows: WindowStore | None = None) -> None:
        self.store = store
        self.windows: WindowStore = windows if windows is not None else MemoryWindows()
        self.tables = tables_for(store)
        self._shared = not isinstance(self.tables, MemoryTables)
        self.registry = MemoryRegistry()
        self._terms_cache: dict[tuple[str, str], Terms] = {}
        # (plan, version, feature, price version, price) -> the terms decisions made under them
        # are completed and rebuilt with
        self._locked_terms: dict[tuple[str, int, str, int, int], Terms] = {}
        self._lock = threading.RLock()
        self._apply(acc.platform_accounts(), 0, lambda cur: self.tables.setup(cur))
        self.tables.finish_setup(store)
        self.reload()
        self.restored: int | None = None
        """How many recorded decisions its own windows were started from (None: given)."""
        if windows is None:
            self.restored = restore_windows(self)

    def reload(self) -> None:
        """Read the registry (plans, prices, customers, organisations, grants) from the tables:
        what another process sharing the database has added becomes known here."""
        kinds = ("plan", "book", "customer", "org", "grant")

        def read(cur: Cursor) -> tuple[int, dict[str, list[tuple[str, str]]]]:
            return self.tables.records_stamp(cur), {k: self.tables.records(cur, k) for k in kinds}

        stamp, rows = self.tables.read(self.store, read)
        with self._lock:
            self._records_stamp = stamp
            for _, body in rows["plan"]:
                self.registry.add_plan(Plan.model_validate_json(body))
            for _, body in rows["book"]:
                self.registry.add_book(PriceBook.model_validate_json(body))
            for _, body in rows["customer"]:
                known = customer_from_json(body)
                seen = self.registry.customers.get(known.customer)
                known.last_seen = max(known.last_seen, seen.last_seen if seen else 0)
                self.registry.customers[known.customer] = known
            for _, body in rows["org"]:
                org = org_from_json(body)
                self.registry.orgs[org.org] = org
            grants = [grant_from_json(body) for _, body in rows["grant"]]
            self.registry.grants = {}
            for g in sorted(grants, key=lambda g: (g.created, g.grant)):
                self.registry.add_grant(g)
            self._terms_cache.clear()

    def refresh(self) -> None:
        """`reload` when another process sharing the database may have put a record since
        (one small read when nothing changed)."""
        if self._shared:
            stamp = self.tables.read(self.store, self.tables.records_stamp)
            if stamp != self._records_stamp:
                self.reload()

    def _record(self, kind: str, key: str, body: str) -> Callable[[Cursor], None]:
        return lambda cur: self.tables.put_record(cur, kind, key, body)

    # -- set-up -------------------------------------------------------------------------------

    def publish_plan(self, plan: Plan) -> None:
        """Publish a plan version (replacing one with the same name and version)."""
        with self._lock:
            key = f"{plan.plan}:{plan.version}"
            self.tables.write(self.store, 0, self._record("plan", key, plan.model_dump_json()))
            self.registry.add_plan(plan)
            self._terms_cache.clear()

    def publish_prices(self, book: PriceBook) -> None:
        """Publish a price book version (replacing one with the same version)."""
        with self._lock:
            body = book.model_dump_json()
            self.tables.write(self.store, 0, self._record("book", str(book.version), body))
            self.registry.add_book(book)
            self._terms_cache.clear()

    def add_org(self, org: str, now: int, *, overage_cap: int = 0) -> None:
        """Register an organisation with its pool (and overage room up to `overage_cap`)."""
        check_name("org", org)
        check_count("overage_cap", overage_cap, 0, AMOUNT_MAX)
        with self._lock:
            number = derive_id("org", org)
            events: list[Account | Transfer] = [
                acc.funds_account(acc.pool_account(org), Code.POOL, number),
                acc.funds_account(acc.overage_account(org), Code.OVERAGE, number),
            ]
            if overage_cap:
                events.append(
                    self._move(
                        "overage_cap",
                        org,
                        Code.OVERAGE_FACILITY,
                        acc.overage_account(org),
                        overage_cap,
                        TransferCode.OVERAGE_CAP,
                    )
                )
            record = OrgRecord(org, overage_cap)
            self._apply(events, now, self._record("org", org, record_json(record)))
            self.registry.orgs[org] = record

    def add_customer(self, customer: str, plan: str, now: int, *, org: str | None = None) -> None:
        """Register a customer on a published plan (and optionally an organisation)."""
        check_name("customer", customer)
        with self._lock:
            if plan not in self.registry.plans:
                raise InvalidRequestError("plan", f"no plan named {plan!r} has been published")
            if org is not None and org not in self.registry.orgs:
                raise InvalidRequestError("org", f"no organisation named {org!r}; add it first")
            account = acc.funds_account(
                acc.customer_account(customer), Code.CREDITS, derive_id("customer", customer)
            )
            known = self.registry.customers.get(customer)
            record = CustomerRecord(customer, plan, org, known.last_seen if known else 0)
            self._apply([account], now, self._record("customer", customer, record_json(record)))
            self.registry.customers[customer] = record

    def purchase(self, customer: str, amount: int, purchase_id: str, now: int) -> None:
        """Credit purchased micro-credits; the same `purchase_id` credits once."""
        self._customer(customer)
        target = acc.customer_account(customer)
        self._sell("purchase", customer, purchase_id, target, amount, TransferCode.PURCHASE, now)

    def top_up_pool(self, org: str, amount: int, top_up_id: str, now: int) -> None:
        """Credit an organisation's pool; the same `top_up_id` credits once."""
        if org not in self.registry.orgs:
            raise InvalidRequestError("org", f"no organisation named {org!r}")
        target = acc.pool_account(org)
        self._sell("top_up", org, top_up_id, target, amount, TransferCode.POOL_TOP_UP, now)

    def _sell(
        self,
        kind: str,
        owner: str,
        sale_id: str,
        target: int,
        amount: int,
        code: TransferCode,
        now: int,
    ) -> None:
        check_count("amount", amount, 1, AMOUNT_MAX)
        check_name(f"{kind}_id", sale_id)
        move = self._move(kind, f"{owner}|{sale_id}", Code.SALES, target, amount, code)
        with self._lock:
            self._apply([move], now)

    def grant(
        self,
        customer: str,
        grant: str,
        amount: int,
        expires_at: int,
        now: int,
        *,
        priority: int = 0,
        features: Sequence[str] | None = None,
    ) -> GrantRecord:
        """A promotional grant of `amount` micro-credits serving decisions before `expires_at`."""
        self._customer(customer)
        check_name("grant", grant)
        check_count("amount", amount, 1, AMOUNT_MAX)
        check_count("expires_at", expires_at, now + 1, AMOUNT_MAX)
        check_count("priority", priority, 0, 2**31)
        with self._lock:
            known = [g for g in self.registry.grants.get(customer, []) if g.grant == grant]
            if known:
                return _same_grant(known[0], amount, priority, expires_at, features)
            account_id = acc.grant_account(customer, grant)
            owner = derive_id("customer", customer)
            record = GrantRecord(
                customer,
                grant,
                account_id,
                amount,
                priority,
                expires_at,
                now,
                tuple(features) if features is not None else None,
            )
            self._apply(
                [
                    acc.funds_account(account_id, Code.GRANT, owner),
                    self._move(
                        "grant",
                        f"{customer}|{grant}",
                        Code.PROMOTIONS,
                        account_id,
                        amount,
                        TransferCode.GRANT,
                    ),
                ],
                now,
                self._record("grant", f"{customer}|{grant}", record_json(record)),
            )
            self.registry.add_grant(record)
            return record

    def balances(self, customer: str) -> dict[str, int]:
        """Available micro-credits per money source of a customer: "credits", "grant:<id>" (live
        grants), and "pool"/"overage" for an organisation member."""
        record = self._customer(customer)
        slots = [("credits", acc.customer_account(customer))]
        slots += [
            (f"grant:{g.grant}", g.account_id) for g in self.registry.grants.get(customer, [])
        ]
        if record.org is not None:
            slots += [("pool", acc.pool_account(record.org))]
            slots += [("overage", acc.overage_account(record.org))]
        found = {a.id: a.available for a in self.store.lookup_accounts([i for _, i in slots])}
        return {name: found.get(account_id, 0) for name, account_id in slots}

    # -- decide -------------------------------------------------------------------------------

    def decide(
        self,
        customer: str,
        feature: str,
        units: int,
        key: str,
        now: int,
        *,
        timeout: int | None = None,
    ) -> Decision:
        """One definitive decision; the same key returns the same decision and consumes once."""
        request = DecideRequest(customer, feature, units, key, now, timeout)
        _check_request(request)
        with self._lock:
            if not self._shared:
                return self._decide_one(request, None)
            # A batch of one: the earlier decision and the latest time in one read.
            batch = self._batch_for([request])
            decision = self._decide_one(request, batch)
            failed = self._record_batch(batch)
        if failed is not None:
            raise failed
        return decision

    def decide_many(self, requests: Sequence[DecideRequest]) -> list[Decision | Exception]:
        """Each request decided in order as `decide` would decide it, with what `decide` would
        raise returned in its place. The decisions that hold no money are recorded together in
        one transaction at the end (group commit: one durable write for the batch, not one
        each); if that write fails, they give back what they took and each gets the error.
        Decisions that hold money commit with their holds, one by one, as in `decide`."""
        refused: dict[int, InvalidRequestError] = {}
        for i, request in enumerate(requests):
            try:
                _check_request(request)
            except InvalidRequestError as error:
                refused[i] = error
        results: list[Decision | Exception] = []
        with self._lock:
            # Only checked requests reach the up-front read (their keys are names).
            batch = self._batch_for([q for i, q in enumerate(requests) if i not in refused])
            for i, request in enumerate(requests):
                if i in refused:
                    results.append(refused[i])
                    continue
                try:
                    results.append(self._decide_one(request, batch))
                except Exception as error:  # that request's own error, as `decide` raises it
                    results.append(error)
            failed = self._record_batch(batch)
        if failed is not None:
            ids = {d.decision_id for _, d in batch.unwritten}
            return [
                failed if isinstance(x, Decision) and x.decision_id in ids else x for x in results
            ]
        return results

    def _decide_one(self, q: DecideRequest, batch: _Batch | None) -> Decision:
        record = self._customer(q.customer)
        earlier = self._earlier(q.customer, q.key, batch)
        if earlier is not None:
            return _replay(earlier, q.feature, q.units, q.timeout)
        at = max(q.now, record.last_seen, self._latest(q.customer, batch))
        terms = self._terms(record.plan, q.feature, at)
        if q.units * terms.price > AMOUNT_MAX:
            raise InvalidRequestError("units", f"{q.units} units at {terms.price} overflow")
        request = _Request(
            record,
            q.feature,
            q.units,
            q.key,
            at,
            terms,
            q.timeout if q.timeout is not None else terms.fp.reservation_timeout,
            derive_id("decision", q.customer, q.key),
            q.timeout,
        )
        decision = self._windows_only(request) or self._decide(request)
        holds = any(p.transfer_id for p in decision.parts)  # written with its holds, if any
        if batch is not None:
            batch.earlier[(q.customer, q.key)] = decision
            if not holds:
                batch.unwritten.append((request, decision))
        elif not holds:
            self._record_decisions([(request, decision)])
        record.last_seen = at
        if self._shared and holds:  # the others once the batch is written
            self.registry.put_decision(decision)  # a cache in front of the SQL tables
        return decision

    def _record_decisions(self, made: list[tuple[_Request, Decision]]) -> None:
        """Write decisions that hold nothing in one transaction; if the write fails, what they
        took from windows and allowances is given back (they were not decided)."""
        decisions = [d for _, d in made]
        try:
            self.tables.write(
                self.store,
                max(d.now for d in decisions),
                lambda cur: self.tables.put_decisions(cur, decisions),
            )
        except BaseException:
            for request, decision in made:
                self._give_back(request, decision)
            raise

    def _batch_for(self, requests: Sequence[DecideRequest]) -> _Batch:
        """A batch with, on a shared database, the decisions already made under the requests'
        keys and the customers' latest decision times, read together (one statement)."""
        if not self._shared:
            return _Batch({}, {})
        pairs = [(q.customer, q.key) for q in requests if isinstance(q.customer, str)]
        cached = self.registry.decisions
        wanted = [pair for pair in pairs if pair not in cached]
        customers = sorted({c for c, _ in pairs})
        # All replays the cache holds need no time: no read.
        earlier, latest = (
            self.tables.earlier_and_latest(self.store, wanted, customers) if wanted else ({}, {})
        )
        earlier.update((pair, cached[pair]) for pair in pairs if pair in cached)
        return _Batch(earlier, latest)

    def _record_batch(self, batch: _Batch) -> Exception | None:
        """Group commit of the batch's unwritten decisions; returns the error if it failed."""
        if not batch.unwritten:
            return None
        try:
            self._record_decisions(batch.unwritten)
        except Exception as error:
            return error
        if self._shared:
            for _, decision in batch.unwritten:
                self.registry.put_decision(decision)
        return None

    def _latest(self, customer: str, batch: _Batch | None = None) -> int:
        """The latest time any process evaluated a decision of `customer` at: time per
        customer never runs backwards, whichever node's clock stamps the request."""
        if not self._shared:
            return self.tables.latest(None, customer)
        assert batch is not None, "on a shared database the times are read up front"
        return batch.latest.get(customer, 0)

    def _give_back(self, r: _Request, decision: Decision) -> None:
        """Release what a decision that could not be recorded took from windows and allowance."""
        self.keep_free(decision, {p.layer: 0 for p in decision.parts if not p.transfer_id}, r.now)

    def _earlier(self, customer: str, key: str, batch: _Batch | None = None) -> Decision | None:
        """A decision made with this key before, here or (sharing the database) elsewhere."""
        if batch is not None and (self._shared or (customer, key) in batch.earlier):
            return batch.earlier.get((customer, key))  # read up front, or made in this batch
        assert not self._shared, "on a shared database the earlier decisions are read up front"
        return self.tables.decision_by_key(None, customer, key)

    def decision(self, decision_id: int) -> Decision | None:
        """The decision with this id, if one was made."""
        if not self._shared:
            return self.tables.decision_by_id(None, decision_id)
        found = self.registry.decisions_by_id.get(decision_id)
        if found is None:
            found = self.tables.read(
                self.store, lambda cur: self.tables.decision_by_id(cur, decision_id)
            )
        return found

    def _terms(self, plan: str, feature: str, now: int) -> Terms:
        terms = self._terms_cache.get((plan, feature))
        if terms is None or not terms.valid_from <= now < terms.valid_until:
            terms = compile_terms(self.registry, plan, feature, now)
            self._terms_cache[(plan, feature)] = terms
        return terms

    def _windows_only(self, r: _Request) -> Decision | None:
        """The common case in one window-store call: the windows, first, cover the request.
        The general path would reach the same decision (greedy order); this skips its reads."""
        terms = r.terms
        if not terms.windows_first:
            return None
        c, units = r.customer.customer, r.units
        takes = [
            WindowTake(c + suffix, length, limit, units * weight)
            for suffix, length, limit, weight in terms.window_keys
        ]
        taken, used = self.windows.take(str(r.decision_id), takes, r.now)
        if not taken:
            return None
        spans = zip(takes, used, terms.window_keys, strict=True)
        room = min([(t.limit - u) // w[3] for t, u, w in spans])
        return self._decision(
            r, True, (Part("windows", units),), (Consulted("windows", room, units),)
        )

    def _decide(self, r: _Request) -> Decision:
        # Holds whose timeout has passed release their money first (checked in the same read).
        expired_first = partial(self._available_at, now=r.now)
        for attempt in range(_ATTEMPTS):
            windows, allowance, money = self.views(r, None if attempt else expired_first)
            names, rooms = _rooms(r.fp, windows, allowance, money)
            allowed, parts = allocate_units(r.units, rooms)
            consulted = tuple(
                Consulted(n, room, p) for n, room, p in zip(names, rooms, parts, strict=True)
            )
            if not allowed:
                return self._refusal(r, windows, allowance, money, rooms, consulted)
            decision = self._reserve(r, names, parts, windows, allowance, money, consulted)
            if decision is not None:
                return decision
        raise ConcurrentChangeError(
            f"balances of {r.customer.customer!r} changed during {_ATTEMPTS} attempts; retry"
        )

    def views(
        self, r: _Request, available: Callable[[list[int]], dict[int, int]] | None = None
    ) -> tuple[list[WindowView], AllowanceView | None, list[MoneyView]]:
        """What each layer has for `r` (money read through `available`, default the store)."""
        windows: list[WindowView] = []
        allowance: AllowanceView | None = None
        money: list[MoneyView] = []
        for layer in r.fp.layers:
            if isinstance(layer, WindowsLayer):
                windows = self._window_views(r)
            elif isinstance(layer, AllowanceLayer):
                allowance = self._allowance_view(r, layer)
            else:
                money += self._money_slots(r, layer.kind)
        read = available or self._available
        found = read([m.account_id for m in money])
        money = [
            MoneyView(m.layer, m.account_id, found[m.account_id], r.price, m.expires_at)
            for m in money
            if m.account_id in found
        ]
        return windows, allowance, money

    def _available(self, ids: list[int]) -> dict[int, int]:
        return {a.id: a.available for a in self.store.lookup_accounts(ids)}

    def _available_at(self, ids: list[int], now: int) -> dict[int, int]:
        return {a.id: a.available for a in self.store.accounts_at(ids, now)}

    def _window_views(self, r: _Request) -> list[WindowView]:
        c = r.customer.customer
        keys = [(c + w.suffix, w.length_ns) for w in r.terms.windows]
        used = self.windows.used(keys, r.now)
        return [
            WindowView(w.name, key, w.length_ns, w.limit, w.weight, u)
            for w, (key, _), u in zip(r.terms.windows, keys, used, strict=True)
        ]

    def _allowance_view(self, r: _Request, layer: AllowanceLayer) -> AllowanceView:
        start, end = period_bounds(r.now, layer.period)
        key = _allowance_key(r, start)
        [used] = self.windows.used([(key, end - start)], r.now)
        return AllowanceView(key, layer.amount, used, start, end)

    def _money_slots(self, r: _Request, kind: str) -> list[MoneyView]:
        c = r.customer.customer
        if kind == "grants":
            return [
                MoneyView(f"grant:{g.grant}", g.account_id, 0, r.price, g.expires_at)
                for g in self.registry.grants_for(c, r.feature, r.now)
            ]
        if kind == "credits":
            return [MoneyView("credits", acc.customer_account(c), 0, r.price)]
        org = r.customer.org
        if org is None:
            return []
        slots = [MoneyView("pool", acc.pool_account(org), 0, r.price)]
        if self.registry.orgs[org].overage_cap:
            slots.append(MoneyView("overage", acc.overage_account(org), 0, r.price))
        return slots

    def _reserve(
        self,
        r: _Request,
        names: list[str],
        parts: list[int],
        windows: list[WindowView],
        allowance: AllowanceView | None,
        money: list[MoneyView],
        consulted: tuple[Consulted, ...],
    ) -> Decision | None:
        """Take the windows, then hold the money; None (nothing kept) if either raced."""
        token = str(r.decision_id)
        by_name = dict(zip(names, parts, strict=True))
        takes = _takes(windows, by_name.get("windows", 0), allowance, by_name.get("allowance", 0))
        if takes and not self.windows.take(token, takes, r.now)[0]:
            return None
        holds = [
            Part(
                m.layer,
                by_name[m.layer],
                by_name[m.layer] * r.price,
                derive_id("hold", r.decision_id, m.layer),
                m.account_id,
            )
            for m in money
            if by_name[m.layer]
        ]
        held = {p.layer: p for p in holds}
        chosen = [held.get(n, Part(n, by_name[n])) for n in names if by_name[n]]
        decision = self._decision(r, True, tuple(chosen), consulted)
        placed = False
        try:
            placed = not holds or self._place_holds(r, holds, decision)
        finally:
            if not placed:  # nothing was decided (or the store failed): give the units back
                for t in takes:
                    self.windows.release(token, t.key, t.units)
        return decision if placed else None

    def _place_holds(self, r: _Request, holds: list[Part], decision: Decision) -> bool:
        """Place the holds and record the decision in one transaction, if the funds still
        cover them there (another process may have spent them since they were read)."""
        placed: list[bool] = []

        def build(view: TxView) -> tuple[list[Transfer], Then]:
            found = {a.id: a.available for a in view.accounts([p.account_id for p in holds])}
            if any(found.get(p.account_id, 0) < p.amount for p in holds):
                raise Rollback
            events = [_hold(p, r, last=i == len(holds) - 1) for i, p in enumerate(holds)]
            return events, then

        def then(results: list[Result], cur: Cursor) -> None:
            if any(res not in _SETTLED for res in results):
                raise Rollback
            self.tables.put_decision(cur, decision)
            placed.append(True)

        self.store.transact(r.now, build)
        return bool(placed)

    def _refusal(
        self,
        r: _Request,
        windows: list[WindowView],
        allowance: AllowanceView | None,
        money: list[MoneyView],
        rooms: list[int],
        consulted: tuple[Consulted, ...],
    ) -> Decision:
        kinds = [layer.kind for layer in r.fp.layers if layer.kind in ("grants", "credits", "pool")]
        reasons = refusal_reasons(r.units, windows, allowance, money, kinds)
        with_entries = [(w, self.windows.entries(w.key, w.length_ns, r.now)) for w in windows]
        wait = retry_after(r.now, r.units, with_entries, allowance, money)
        credits = next((m for m in money if m.layer == "credits"), None)
        buy = credits_to_buy(r.units, rooms, credits) if "credits" in kinds else None
        return self._decision(r, False, (), consulted, tuple(reasons), wait, (buy,) if buy else ())

    def _decision(
        self,
        r: _Request,
        allowed: bool,
        parts: tuple[Part, ...],
        consulted: tuple[Consulted, ...],
        reasons: tuple[Reason, ...] = (),
        wait: int | None = None,
        unblock: tuple[Unblock, ...] = (),
    ) -> Decision:
        return Decision(
            r.decision_id,
            r.customer.customer,
            r.feature,
            r.key,
            r.units,
            allowed,
            r.now,
            r.terms.plan.plan,
            r.terms.plan.version,
            r.terms.price_version,
            r.terms.price,
            r.timeout,
            parts,
            consulted,
            reasons,
            wait,
            unblock,
            r.timeout_override,
        )

    # -- usage and completion ----------------------------------------------------------------

    @property
    def lock(self) -> threading.RLock:
        return self._lock

    def complete(self, decision_id: int, actual_units: int, now: int) -> Completion:
        """Settle an allowed decision with the units actually used (0 releases everything).

        Posts each hold up to what is kept and voids the rest; an excess (or what an expired
        hold can no longer post) goes through the waterfall at `now`, and what no layer covers
        is written off. Completing again with the same actual returns the same completion; a
        different actual raises `CompletionConflictError`. It is recorded as a usage event
        (key `complete-<decision_id>`), so usage, monetization and transfers reconcile."""
        check_count("decision_id", decision_id, 1, ID_MAX - 1)
        check_count("actual_units", actual_units, 0, UNITS_MAX)
        check_count("now", now, 0, AMOUNT_MAX)
        decision = self.decision(decision_id)
        if decision is not None and actual_units * decision.price > AMOUNT_MAX:
            raise InvalidRequestError("actual_units", "overflows the ledger at this price")
        return settlement.complete(self, decision_id, actual_units, now)

    def report_usage(
        self,
        customer: str,
        feature: str,
        units: int,
        key: str,
        decision_id: int,
        occurred_at: int,
        now: int,
    ) -> settlement.Report:
        """Record what a decision actually used, durably with its outbox entry; a settlement
        worker (`settle_pending`) turns it into money. The same key and body is a no-op; the
        same key with a different body is rejected, and every rejection is recorded."""
        return settlement.report_usage(
            self, customer, feature, units, key, decision_id, occurred_at, now
        )

    def report_usage_batch(
        self, reports: Sequence[dict[str, Any]], now: int
    ) -> list[settlement.Report | MeteringError]:
        """Many usage reports in one transaction; each gets its Report or its error."""
        return settlement.report_usage_batch(self, reports, now)

    def settle_pending(self, worker: str, now: int, *, limit: int = 1000) -> int:
        """Settle up to `limit` reported usage events nobody holds; returns how many this call
        settled (see `settlement.settle_pending`)."""
        return settlement.settle_pending(self, worker, now, limit=limit)

    def completion(self, decision_id: int) -> Completion | None:
        found: Completion | None = self.tables.read(
            self.store, lambda cur: self.tables.completion(cur, decision_id)
        )
        return found

    def backlog(self) -> tuple[int, int | None]:
        """(unsettled usage events, the oldest one's occurred_at)."""
        result: tuple[int, int | None] = self.tables.read(self.store, self.tables.backlog)
        return result

    def take_excess(
        self,
        r: _Request,
        windows: list[WindowView],
        allowance: AllowanceView | None,
        parts: dict[str, int],
    ) -> list[WindowTake] | None:
        """Take the excess's window and allowance units (once per decision); the takes made,
        or None when the windows no longer fit them."""
        takes = _takes(windows, parts.get("windows", 0), allowance, parts.get("allowance", 0))
        if takes and not self.windows.take(f"{r.decision_id}:excess", takes, r.now)[0]:
            return None
        return takes

    def free_takes(self, d: Decision, now: int, units: dict[str, int]) -> list[WindowTake]:
        """The window and allowance takes of `units` (by layer: "windows", "allowance") of
        decision `d`'s feature and plan version at `now`. Its windows are read, as deciding
        read them: what has expired by `now` under these terms' lengths is evicted (a window a
        later plan version makes longer would count it again)."""
        r = self.request_for(d, now)
        windows: list[WindowView] = []
        allowance: AllowanceView | None = None
        for layer in r.fp.layers:
            if isinstance(layer, WindowsLayer) and units.get("windows"):
                windows = self._window_views(r)
            elif isinstance(layer, AllowanceLayer) and units.get("allowance"):
                allowance = self._allowance_view(r, layer)
        return _takes(windows, units.get("windows", 0), allowance, units.get("allowance", 0))

    def forget_excess(self, r: _Request) -> None:
        """Give back whatever an earlier attempt at settling `r`'s decision took for its excess
        and never committed: shared windows (Redis) outlive a process killed between that take
        and the commit, and the excess must be split on the room it really has, not charged to
        money for units the windows still count for it. Reads no window, and gives back in all
        of them in one call: the keys follow from the terms (an allowance's from `r.now`'s
        period)."""
        c = r.customer.customer
        keys = [c + w.suffix for w in r.terms.windows]
        for layer in r.fp.layers:
            if isinstance(layer, AllowanceLayer):
                keys.append(_allowance_key(r, period_bounds(r.now, layer.period)[0]))
        self.windows.keep_all(
            f"{r.decision_id}:excess", [WindowKeep(k, None, 0) for k in keys], r.now
        )

    def release_excess(self, decision_id: int, takes: list[WindowTake]) -> None:
        """Give back an excess's takes whose settlement did not commit."""
        for t in takes:
            self.windows.release(f"{decision_id}:excess", t.key, t.units)

    def rooms(
        self,
        r: _Request,
        windows: list[WindowView],
        allowance: AllowanceView | None,
        money: list[MoneyView],
    ) -> tuple[list[str], list[int]]:
        return _rooms(r.fp, windows, allowance, money)

    def keep_free(self, d: Decision, kept: dict[str, int], now: int) -> None:
        """Give back the window and allowance units decision `d` did not use, in one call: its
        token is left with `kept[layer]` units of each free layer named
        (`WindowStore.keep_all`), so giving back again, after a settlement that did not
        commit, changes nothing."""
        decided = {p.layer: p.units for p in d.parts}
        if all(units >= decided.get(layer, 0) for layer, units in kept.items()):
            return  # nothing to give back
        r = self.request_for(d, now)
        c, keeps = r.customer.customer, []
        for layer in r.fp.layers:
            units = kept.get(layer.kind)
            if units is None or units >= decided.get(layer.kind, 0):
                continue
            # Each window evicts what expired under the decision's terms before anything is
            # given back, as reading it would (a window a later plan version makes longer would
            # count an entry left there again).
            if isinstance(layer, WindowsLayer):
                keeps += [
                    WindowKeep(c + w.suffix, w.length_ns, units * w.weight) for w in r.terms.windows
                ]
            elif isinstance(layer, AllowanceLayer):
                start, end = period_bounds(r.now, layer.period)
                keeps.append(WindowKeep(_allowance_key(r, start), end - start, units))
        self.windows.keep_all(str(r.decision_id), keeps, r.now)

    def request_for(self, d: Decision, now: int) -> _Request:
        """`d` again at `now` under the terms it was decided with (its plan version, its
        locked price)."""
        plan = next(p for p in self.registry.plans[d.plan] if p.version == d.plan_version)
        locked = (d.plan, d.plan_version, d.feature, d.price_version, d.price)
        terms = self._locked_terms.get(locked)
        if terms is None or terms.plan is not plan:  # a version published again is compiled anew
            terms = self._locked_terms[locked] = locked_terms(
                plan, d.feature, d.price_version, d.price
            )
        return _Request(
            self._customer(d.customer),
            d.feature,
            d.units,
            d.key,
            now,
            terms,
            d.timeout,
            d.decision_id,
        )

    def expire_grants(self, now: int) -> list[Transfer]:
        """Move what expired grants still hold to the breakage account (recorded transfers)."""
        moved: list[Transfer] = []
        with self._lock:
            expired = [g for gs in self.registry.grants.values() for g in gs if g.expires_at <= now]
            found = self.store.lookup_accounts([g.account_id for g in expired])
            for a in found:
                if a.available > 0:
                    moved.append(
                        Transfer(
                            # debits_posted grows with every sweep: one id per sweep, never reused
                            id=derive_id("breakage", a.id, a.debits_posted),
                            debit_account_id=a.id,
                            credit_account_id=acc.platform_account(Code.BREAKAGE),
                            amount=a.available,
                            ledger=acc.LEDGER,
                            code=int(TransferCode.BREAKAGE),
                        )
                    )
            if moved:
                self._apply(moved, now)
        return moved

    # -- helpers ------------------------------------------------------------------------------

    def _customer(self, customer: str) -> CustomerRecord:
        record = self.registry.customers.get(customer)
        if record is None and self._shared:
            self.refresh()  # another process sharing the database may have added it
            record = self.registry.customers.get(customer)
        if record is None:
            raise UnknownCustomerError(f"unknown customer {customer!r}; add it with a plan first")
        return record

    def _move(
        self, kind: str, name: str, source: Code, target: int, amount: int, code: TransferCode
    ) -> Transfer:
        return Transfer(
            id=derive_id(kind, name),
            debit_account_id=acc.platform_account(source),
            credit_account_id=target,
            amount=amount,
            ledger=acc.LEDGER,
            code=int(code),
        )

    def _apply(
        self,
        events: Sequence[Account | Transfer],
        now: int,
        also: Callable[[Cursor], None] | None = None,
    ) -> None:
        """Apply set-up events that must all be accepted (or exist), and `also`'s rows with
        them; a refusal rolls everything back and says which event."""
        refused: list[str] = []

        def then(results: list[Result], cur: Cursor) -> None:
            for event, result in zip(events, results, strict=True):
                if result not in _SETTLED:
                    refused.append(f"{type(event).__name__.lower()} {event.id}: {result.name}")
                    raise Rollback
            if also is not None:
                also(cur)

        self.store.apply(events, now, then=then)
        if refused:
            raise MeteringError(f"the ledger refused {refused[0].lower()}; nothing was changed")


def _same_grant(
    g: GrantRecord, amount: int, priority: int, expires_at: int, features: Sequence[str] | None
) -> GrantRecord:
    """The grant a repeated call names, if the terms are the same ones."""
    terms = (amount, priority, expires_at, tuple(features) if features is not None else None)
    if (g.amount, g.priority, g.expires_at, g.features) != terms:
        raise GrantConflictError(
            f"grant {g.grant!r} of {g.customer!r} exists with amount {g.amount}, priority "
            f"{g.priority}, expires_at {g.expires_at}, features {g.features}; nothing was "
            "changed: use a new grant id for other terms"
        )
    return g


def _replay(earlier: Decision, feature: str, units: int, timeout: int | None) -> Decision:
    given: list[tuple[str, object, object]] = [
        ("feature", feature, earlier.feature),
        ("units", units, earlier.units),
        ("timeout", timeout, earlier.timeout_override),
    ]
    for field, now, before in given:
        if now != before:
            raise IdempotencyConflictError(earlier.key, field, before, now)
    return earlier


def _rooms(
    fp: FeaturePlan,
    windows: list[WindowView],
    allowance: AllowanceView | None,
    money: list[MoneyView],
) -> tuple[list[str], list[int]]:
    """Layer names and rooms in the plan's order (money slots in burn order within a layer)."""
    names: list[str] = []
    rooms: list[int] = []
    for layer in fp.layers:
        if layer.kind == "windows":
            names.append("windows")
            rooms.append(min(w.room for w in windows))
        elif layer.kind == "allowance":
            assert allowance is not None
            names.append("allowance")
            rooms.append(allowance.room)
        else:
            slots = [m for m in money if money_kind(m.layer) == layer.kind]
            names += [m.layer for m in slots]
            rooms += [m.room for m in slots]
    return names, rooms


def _allowance_key(r: _Request, period_start: int) -> str:
    """The window store's key of `r`'s allowance in the period starting at `period_start`."""
    return f"{r.customer.customer}|{r.feature}|allowance|{period_start}"


def _takes(
    windows: list[WindowView], units: int, allowance: AllowanceView | None, allowance_units: int
) -> list[WindowTake]:
    takes = [WindowTake(w.key, w.length_ns, w.limit, units * w.weight) for w in windows if units]
    if allowance is not None and allowance_units:
        takes.append(
            WindowTake(
                allowance.key,
                allowance.period_end - allowance.period_start,
                allowance.amount,
                allowance_units,
            )
        )
    return takes


def _hold(p: Part, r: _Request, *, last: bool) -> Transfer:
    return Transfer(
        id=p.transfer_id,
        debit_account_id=p.account_id,
        credit_account_id=acc.platform_account(Code.REVENUE),
        amount=p.amount,
        timeout=r.timeout,
        ledger=acc.LEDGER,
        code=int(TransferCode.HOLD),
        user_data=r.decision_id,
        flags=_HOLD if last else _HOLD | _LINKED,
    )
