"""The step loop: run steps against the real engine (API nodes and settlement workers, each a
`Meter` over one shared store and one shared window store), inject the faults the steps carry,
and after every step check the engine against the reference ledger and the metering model.

Checks after every step:
- ledger: every batch the store applied was applied to the `ReferenceLedger` too, with the same
  results; every account's fields agree; the reference's per-ledger totals balance (L1-L7 as
  the kernel states them);
- metering model: every answer (decision, completion, usage report, claim, grant sweep) is the
  model's; every funding and platform account holds what the model expects; every hold the
  model resolved is posted or voided in the ledger, and no other hold is;
- windows: each window touched counts what the model counts, never above its limit (M5);
- every `audit_every` steps and after the last: `audit(store)` (L1-L7, M1-M4, M6 on the data,
  the hash chain) and every transfer and pending status against the reference.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ledger.core.errors import LedgerError
from ledger.core.types import Account, Transfer
from ledger.metering import settlement
from ledger.metering.audit import audit
from ledger.metering.decision import Completion, Decision
from ledger.metering.ids import derive_id
from ledger.metering.meter import Meter
from ledger.metering.plans import plan_from_data, price_book_from_data
from ledger.metering.settlement import Report
from ledger.metering.windows import MemoryWindows
from ledger.sim.mirror import (
    InjectedFault,
    Mirror,
    Recorder,
    RecordingMemoryStore,
    RecordingSqliteStore,
)
from ledger.sim.model import (
    REVENUE,
    Expected,
    MCompletion,
    MDecision,
    Model,
)
from ledger.sim.world import OPS_LEDGER, Config, OpsAccount, OpsEvent, OpsTransfer, Step, clock_text
from ledger.store.base import Store

T = TypeVar("T")
AUDIT_EVERY = 250
_CONFIGURATION = frozenset({"publish_plan", "publish_prices", "add_org", "add_customer", "grant"})


@dataclass(frozen=True, slots=True)
class Violation:
    """A broken check: at which step (its index in the generated trace), of which kind
    (`ledger`, `model.decision`, `model.money`, `windows`, `audit`, `error`, ...), and what."""

    step: int
    category: str
    message: str

    def text(self) -> str:
        return f"step #{self.step}: [{self.category}] {self.message}"


@dataclass(slots=True)
class Outcome:
    """What one run did."""

    trace: list[str] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    executed: int = 0


class Runner:
    """The engine under test plus the reference ledger and the model, for one run."""

    def __init__(
        self,
        config: Config,
        store: str,
        directory: Path,
        *,
        audit_every: int = AUDIT_EVERY,
    ) -> None:
        self.config = config
        self.store_kind = store
        self.audit_every = audit_every
        self.mirror = Mirror()
        self.recorder = Recorder(self.mirror.on_batches)
        self.windows = ObservedWindows(lambda: self.recorder.failing)
        self.model = Model()
        self.out = Outcome()
        self.step: Step | None = None
        self.path = directory / f"sim-{config.seed}-{os.getpid()}-{_next_file()}.db"
        if store == "memory":
            self.shared: Store | None = RecordingMemoryStore(self.recorder)
        elif store == "sqlite":
            self.shared = None
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
        else:
            raise ValueError(f"store must be 'memory' or 'sqlite', not {store!r}")
        self.stores: list[Store] = []
        self.meters: list[Meter] = []
        for _ in config.nodes:
            store_ = self._open()
            self.stores.append(store_)
            self.meters.append(Meter(store_, self.windows))
        # What the clients know (ids handed back to them), by their own names.
        self.decision_ids: dict[tuple[str, str], int] = {}
        self.features: dict[tuple[str, str], str] = {}
        self.usage_ids: dict[tuple[str, str], int] = {}
        self.claims: dict[str, list[int]] = {}
        self.resolved: list[tuple[int, int]] = []  # (hold, expected ledger status) this step
        self.money_seen: dict[int, tuple[int, int, int, int]] = {}
        self.latest_report = 0  # the highest usage report number delivered so far

    def _open(self) -> Store:
        if self.shared is not None:
            return self.shared
        return RecordingSqliteStore(self.path, self.recorder)

    def close(self) -> None:
        if self.shared is None:
            for s in self.stores:
                s.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)

    # -- the loop -----------------------------------------------------------------------------

    def run(self, steps: Sequence[Step], *, keep_going: bool = False) -> Outcome:
        """Run the steps, stopping after the first step whose checks fail (`keep_going`: run
        them all and collect every violation; what follows a first failure is noise)."""
        self.out.trace.append(f"{self.config.header()}; store {self.store_kind}")
        last = len(steps) - 1
        for n, step in enumerate(steps):
            self._run_step(step)
            self.out.executed += 1
            if (keep_going or not self.out.violations) and (
                n == last or (n + 1) % self.audit_every == 0
            ):
                self._deep_checks(step)
            if self.out.violations and not keep_going:
                break
        return self.out

    def _run_step(self, step: Step) -> None:
        self.step = step
        self.model.touched_windows.clear()
        self.resolved = []
        self.recorder.arm(step.fail)
        fired_before = self.recorder.fired
        try:
            outcome = getattr(self, f"_s_{step.kind}")(step)
        except Exception as exc:  # an unexpected error of the engine is a finding
            outcome = f"error {type(exc).__name__}"
            self._violate("error", f"{type(exc).__name__}: {exc} ({_where(exc)})")
        self.recorder.disarm()
        if self.recorder.fired > fired_before:
            self.out.faults["store_transaction_failed"] += 1
        self.out.trace.append(f"{step.text(self.config)} -> {outcome}")
        self._checks()

    def _violate(self, category: str, message: str) -> None:
        index = self.step.index if self.step is not None else -1
        self.out.violations.append(Violation(index, category, message))

    def _now(self, step: Step) -> int:
        if step.kind == "ops":
            return step.at + self.config.ops_offset
        return step.at + (self.config.nodes[step.node].offset if step.node >= 0 else 0)

    def _meter(self, step: Step) -> Meter:
        return self.meters[max(step.node, 0)]

    def _call(self, fn: Callable[[], T]) -> T:
        """Call the engine; after an injected store fault, retry once (the caller's retry)."""
        try:
            return fn()
        except InjectedFault:
            self.recorder.disarm()
            return fn()

    # -- comparing answers --------------------------------------------------------------------

    def _expect_same_error(
        self, what: str, got: BaseException | None, want: Expected | None
    ) -> bool:
        """Whether the engine's error (or none) is the model's; a difference is a violation."""
        got_kind = None if got is None else type(got).__name__
        want_kind = None if want is None else want.kind
        if got_kind == want_kind and (want is None or _detail(got) in ("", want.detail)):
            return True
        if got_kind == want_kind and want is not None and not want.detail:
            return True
        self._violate(
            f"model.{what}",
            f"the engine answered {got_kind or 'ok'}{_detail_text(got)}, the model expects "
            f"{want_kind or 'ok'}{f' ({want.detail})' if want is not None and want.detail else ''}",
        )
        return False

    def _gave_back_before_fault(self, fired: int, kept: int) -> bool:
        """Whether this step's settlement gave window units back in an attempt whose commit
        the injected fault then failed (the give-back comes before the commit)."""
        return self.recorder.fired > fired and any(self.windows.kept_at[kept:])

    def _attempt(self, fn: Callable[[], T]) -> tuple[T | None, BaseException | None]:
        try:
            return self._call(fn), None
        except (LedgerError, ValueError) as exc:
            return None, exc

    def _admin(
        self, step: Step, engine: Callable[[Meter, int], Any], model: Callable[[], Any]
    ) -> str:
        now = self._now(step)
        _, error = self._attempt(lambda: engine(self.meters[0], now))
        try:
            model()
            want = None
        except Expected as x:
            want = x
        self._expect_same_error(step.kind, error, want)
        if step.kind in _CONFIGURATION:
            for meter in self.meters[1:]:
                meter.reload()  # configuration reaches every node before its next request
        return "ok" if error is None else f"error {type(error).__name__}"

    # -- set-up steps -------------------------------------------------------------------------

    def _s_publish_plan(self, step: Step) -> str:
        text = step.arg("plan_json")
        plan = plan_from_data(json.loads(text))
        return self._admin(
            step, lambda m, now: m.publish_plan(plan), lambda: self.model.publish_plan(text)
        )

    def _s_publish_prices(self, step: Step) -> str:
        text = step.arg("prices_json")
        book = price_book_from_data(json.loads(text))
        return self._admin(
            step, lambda m, now: m.publish_prices(book), lambda: self.model.publish_prices(text)
        )

    def _s_add_org(self, step: Step) -> str:
        org, cap = step.arg("org"), step.arg("overage_cap")
        return self._admin(
            step,
            lambda m, now: m.add_org(org, now, overage_cap=cap),
            lambda: self.model.add_org(org, cap),
        )

    def _s_top_up(self, step: Step) -> str:
        org, amount, sale = step.arg("org"), step.arg("amount"), step.arg("top_up_id")
        return self._admin(
            step,
            lambda m, now: m.top_up_pool(org, amount, sale, now),
            lambda: self.model.sell("top_up", org, sale, amount),
        )

    def _s_add_customer(self, step: Step) -> str:
        customer, plan, org = step.arg("customer"), step.arg("plan"), step.arg("org")
        return self._admin(
            step,
            lambda m, now: m.add_customer(customer, plan, now, org=org),
            lambda: self.model.add_customer(customer, plan, org),
        )

    def _s_purchase(self, step: Step) -> str:
        customer, amount, sale = step.arg("customer"), step.arg("amount"), step.arg("purchase_id")
        return self._admin(
            step,
            lambda m, now: m.purchase(customer, amount, sale, now),
            lambda: self.model.sell("purchase", customer, sale, amount),
        )

    def _s_grant(self, step: Step) -> str:
        a = dict(step.args)
        now = self._now(step)
        return self._admin(
            step,
            lambda m, now: m.grant(
                a["customer"],
                a["grant"],
                a["amount"],
                a["expires_at"],
                now,
                priority=a["priority"],
                features=a["features"],
            ),
            lambda: self.model.grant(
                a["customer"],
                a["grant"],
                a["amount"],
                a["expires_at"],
                now,
                a["priority"],
                a["features"],
            ),
        )

    # -- decisions ----------------------------------------------------------------------------

    def _released_candidates(self) -> list[frozenset[int]]:
        """Which live holds had expired when the engine read the balances: after this step's
        batches, or before its last one (the batch that places a decision's holds)."""
        live = self.model.live_holds()
        end = self.mirror.ref.state.transfer_status
        before = self.mirror.before_last.state.transfer_status
        at_end = frozenset(h.id for h in live if end[h.id] == 4)
        before_last = frozenset(h.id for h in live if before[h.id] == 4)
        return [at_end] if at_end == before_last else [at_end, before_last]

    def _s_decide(self, step: Step) -> str:
        c, f, units, key = (
            step.arg("customer"),
            step.arg("feature"),
            step.arg("units"),
            step.arg("key"),
        )
        timeout = step.arg("timeout")
        now = self._now(step)
        meter = self._meter(step)
        duplicate = (c, key) in self.decision_ids
        if duplicate:
            self.out.faults["duplicate_request"] += 1
        decision, error = self._attempt(
            lambda: meter.decide(c, f, units, key, now, timeout=timeout)
        )
        expectations: list[MDecision | Expected] = []
        for released in self._released_candidates():
            try:
                expectations.append(
                    self.model.decide(c, f, units, key, now, timeout, released, commit=False)
                )
            except Expected as x:
                expectations.append(x)
        chosen = next(
            (i for i, e in enumerate(expectations) if _decision_matches(decision, error, e)), None
        )
        want = expectations[0 if chosen is None else chosen]
        if chosen is None:
            if isinstance(want, Expected) or error is not None:
                self._expect_same_error(
                    "decision", error, want if isinstance(want, Expected) else None
                )
            else:
                assert decision is not None
                self._violate("model.decision", _decision_diff(decision, want))
            return _decision_text(decision, error)
        if isinstance(want, MDecision):
            released = self._released_candidates()[chosen]
            self.model.decide(c, f, units, key, now, timeout, released, commit=True)
            if want.at > now and not duplicate:
                self.out.faults["clock_skew_corrected"] += 1  # evaluated at the latest time seen
        if decision is not None:
            self.decision_ids[(c, key)] = decision.decision_id
            self.features[(c, key)] = f
        return _decision_text(decision, error)

    # -- completion and usage -----------------------------------------------------------------

    def _statuses(self, decision_ids: Sequence[int]) -> dict[int, int]:
        status = self.mirror.ref.state.transfer_status
        out = {h.id: int(status[h.id]) for h in self.model.live_holds()}
        for did in decision_ids:
            d = self.model.decisions_by_id.get(did)
            for part in d.parts if d is not None else ():
                if part.hold:
                    out[part.hold] = int(status[part.hold])
        return out

    def _note_resolved(self, completions: Sequence[MCompletion]) -> None:
        for c in completions:
            d = self.model.decisions_by_id[c.decision_id]
            for part in d.parts:
                if part.hold:
                    hold = self.model.holds[part.hold]
                    if hold.state == "posted":
                        self.resolved.append((hold.id, 2))
                    elif hold.state == "voided":
                        self.resolved.append((hold.id, 3))

    def _s_complete(self, step: Step) -> str:
        c, key, actual = step.arg("customer"), step.arg("key"), step.arg("actual")
        did = self.decision_ids.get((c, key))
        if did is None:
            return "skipped (the client holds no decision id)"
        now = self._now(step)
        meter = self._meter(step)
        already = did in self.model.completions
        fired, kept = self.recorder.fired, len(self.windows.kept_at)
        got, error = self._attempt(lambda: meter.complete(did, actual, now))
        status = self._statuses([did])
        early = self._gave_back_before_fault(fired, kept)
        try:
            want: MCompletion | None = self.model.complete(
                did, actual, now, status, gave_back_first=early
            )
            expected = None
        except Expected as x:
            want, expected = None, x
        if self._expect_same_error("completion", error, expected) and got is not None:
            assert want is not None
            self._compare_completion(got, want)
            if not already:
                self._note_resolved([want])
        return _completion_text(got, error)

    def _compare_completion(self, got: Completion, want: MCompletion) -> None:
        have = _completion_key(got)
        expect = (
            want.decision_id,
            want.actual,
            want.usage_id,
            want.charges,
            want.written_off,
            want.transfer_ids,
        )
        if have != expect:
            names = ("decision", "actual", "usage", "charges", "written_off", "transfers")
            diffs = [
                f"{n}: engine {h!r}, model {w!r}"
                for n, h, w in zip(names, have, expect, strict=True)
                if h != w
            ]
            self._violate("model.completion", f"decision {want.decision_id}: " + "; ".join(diffs))

    def _report_body(self, report: tuple[str, str, str, int, int]) -> dict[str, Any] | None:
        c, key, ukey, units, occurred = report
        did = self.decision_ids.get((c, key))
        if did is None:
            return None
        return {
            "customer": c,
            "feature": self.features[(c, key)],
            "units": units,
            "key": ukey,
            "decision_id": did,
            "occurred_at": occurred,
        }

    def _model_report(self, body: dict[str, Any]) -> tuple[int, bool] | Expected:
        try:
            usage, duplicate = self.model.report(
                body["customer"],
                body["feature"],
                body["units"],
                body["key"],
                body["decision_id"],
                body["occurred_at"],
            )
            return usage.id, duplicate
        except Expected as x:
            return x

    def _check_report(self, body: dict[str, Any], got: Report | BaseException) -> str:
        want = self._model_report(body)
        if (body["customer"], body["key"]) in self.usage_ids:
            self.out.faults["redelivered_report"] += 1
        number = int(body["key"].lstrip("u") or 0)
        if number < self.latest_report:
            self.out.faults["reordered_report"] += 1  # an earlier report delivered later
        self.latest_report = max(self.latest_report, number)
        if isinstance(got, Report):
            self.usage_ids[(body["customer"], body["key"])] = got.usage.id
        if isinstance(want, Expected) or not isinstance(got, Report):
            self._expect_same_error(
                "usage",
                None if isinstance(got, Report) else got,
                want if isinstance(want, Expected) else None,
            )
            return "rejected" if not isinstance(got, Report) else "accepted"
        if (got.usage.id, got.duplicate) != want:
            self._violate(
                "model.usage",
                f"usage {body['key']}: engine (id {got.usage.id}, duplicate {got.duplicate}), "
                f"model (id {want[0]}, duplicate {want[1]})",
            )
        return "duplicate" if got.duplicate else "accepted"

    def _s_report(self, step: Step) -> str:
        body = self._report_body(step.arg("report"))
        if body is None:
            return "skipped (the client holds no decision id)"
        meter = self._meter(step)
        now = self._now(step)
        got: Report | BaseException
        try:
            got = self._call(
                lambda: meter.report_usage(
                    body["customer"],
                    body["feature"],
                    body["units"],
                    body["key"],
                    body["decision_id"],
                    body["occurred_at"],
                    now,
                )
            )
        except (LedgerError, ValueError) as exc:
            got = exc
        return self._check_report(body, got)

    def _s_report_batch(self, step: Step) -> str:
        bodies = [b for r in step.arg("reports") if (b := self._report_body(r)) is not None]
        if not bodies:
            return "skipped (the client holds no decision id)"
        meter = self._meter(step)
        now = self._now(step)
        outcomes = self._call(lambda: meter.report_usage_batch(bodies, now))
        texts = [self._check_report(b, o) for b, o in zip(bodies, outcomes, strict=True)]
        return ",".join(texts)

    def _settled(
        self, step: Step, usage_ids: Sequence[int], completions: Sequence[MCompletion]
    ) -> None:
        """Compare what the engine recorded for each settled decision with the model."""
        meter = self._meter(step)
        for want in completions:
            got = meter.completion(want.decision_id)
            if got is None:
                self._violate("model.completion", f"decision {want.decision_id} has no completion")
            else:
                self._compare_completion(got, want)
        self._note_resolved(completions)

    def _decisions_of(self, usage_ids: Sequence[int]) -> list[int]:
        return [
            self.model.usage_by_id[u].decision_id for u in usage_ids if u in self.model.usage_by_id
        ]

    def _s_settle(self, step: Step) -> str:
        meter = self._meter(step)
        now = self._now(step)
        name = self.config.nodes[step.node].name
        limit = step.arg("limit")
        fired, kept = self.recorder.fired, len(self.windows.kept_at)
        count, error = self._attempt(
            lambda: settlement.settle_pending(meter, name, now, limit=limit)
        )
        ids = self.model.pick(now, limit, derive_id("pick", name, now))
        if self._gave_back_before_fault(fired, kept):
            self.model.give_back_first(ids, now)
        if self.recorder.fired > fired and ids:
            # A failed attempt settled nothing (its one transaction rolled back), unless the
            # fault came after the commit. Which happened shows in the outbox.
            outbox = meter.tables.read(meter.store, meter.tables.outbox_ids)
            if all(u in outbox for u in ids):
                ids = []
        done = self.model.settle(ids, now, self._statuses(self._decisions_of(ids)))
        if self._expect_same_error("settlement", error, None) and count != len(ids):
            self._violate(
                "model.settlement", f"{name} settled {count}, the model expects {len(ids)}"
            )
        self._settled(step, ids, done)
        return f"settled {count}"

    def _s_stall(self, step: Step) -> str:
        meter = self._meter(step)
        now = self._now(step)
        name = self.config.nodes[step.node].name
        limit, lease = step.arg("limit"), self.config.lease_ns
        claimed: list[int] = []

        def claim() -> None:
            claimed.clear()
            meter.tables.write(
                meter.store,
                now,
                lambda cur: claimed.extend(meter.tables.claim(cur, name, now, lease, limit)),
            )

        _, error = self._attempt(claim)
        want = self.model.claim(now, lease, limit)
        if self._expect_same_error("settlement", error, None) and sorted(claimed) != want:
            self._violate("model.settlement", f"{name} claimed {sorted(claimed)}, model {want}")
        self.claims.setdefault(name, []).extend(claimed)
        self.out.faults["stalled_worker"] += 1
        return f"claimed {len(claimed)} and stalled"

    def _s_resume(self, step: Step) -> str:
        name = self.config.nodes[step.node].name
        ids = self.claims.pop(name, [])
        if not ids:
            return "nothing claimed"
        meter = self._meter(step)
        now = self._now(step)
        got, error = self._attempt(lambda: settlement.settle(meter, ids, now))
        done = self.model.settle(ids, now, self._statuses(self._decisions_of(ids)))
        if self._expect_same_error("settlement", error, None):
            have = [c.decision_id for c in got or []]
            if have != [c.decision_id for c in done]:
                self._violate(
                    "model.settlement",
                    f"the resumed {name} settled decisions {have}, the model expects "
                    f"{[c.decision_id for c in done]} (the others were settled meanwhile)",
                )
        self._settled(step, ids, done)
        return f"resumed: {len(ids)} claimed, {len(got or [])} settled"

    def _s_redeliver(self, step: Step) -> str:
        uid = self.usage_ids.get((step.arg("customer"), step.arg("usage_key")))
        if uid is None:
            return "skipped (no such usage delivered)"
        self.out.faults["redelivered_settlement"] += 1
        meter = self._meter(step)
        now = self._now(step)
        got, error = self._attempt(lambda: settlement.settle(meter, [uid], now))
        done = self.model.settle([uid], now, self._statuses(self._decisions_of([uid])))
        if self._expect_same_error("settlement", error, None) and len(got or []) != len(done):
            self._violate(
                "model.settlement",
                f"redelivery settled {len(got or [])}, the model expects {len(done)}",
            )
        self._settled(step, [uid], done)
        return f"settled {len(got or [])}"

    def _s_expire_grants(self, step: Step) -> str:
        meter = self._meter(step)
        now = self._now(step)
        got, error = self._attempt(lambda: meter.expire_grants(now))
        want = self.model.expire_grants(now)
        if self._expect_same_error("grants", error, None):
            have = sorted((t.debit_account_id, t.amount) for t in got or [])
            if have != want:
                self._violate("model.grants", f"breakage moved {have}, the model expects {want}")
        return f"moved {len(want)}"

    def _s_kill(self, step: Step) -> str:
        node = step.node
        self.out.faults["node_killed"] += 1
        name = self.config.nodes[node].name
        self.claims.pop(name, None)
        if self.shared is None:
            self.stores[node].close()
            self.stores[node] = self._open()
        self.meters[node] = Meter(self.stores[node], self.windows)
        return f"{name} restarted"

    def _s_ops(self, step: Step) -> str:
        events = [_ops_event(e) for e in step.arg("events")]
        try:
            results = self._call(lambda: self.stores[0].apply(events, self._now(step)))
        except LedgerError as exc:
            return f"refused: {type(exc).__name__}"
        return ",".join(r.name.lower() for r in results)

    # -- checks -------------------------------------------------------------------------------

    def _checks(self) -> None:
        for problem in self.mirror.problems:
            self._violate("ledger", problem)
        self.mirror.problems.clear()
        status = self.mirror.ref.state.transfer_status
        for problem in self.model.absorb_expiries(
            {h.id: int(status[h.id]) for h in self.model.live_holds()}
        ):
            self._violate("model.holds", problem)
        for hold, expected in self.resolved:
            if int(status[hold]) != expected:
                self._violate(
                    "model.holds",
                    f"hold {hold} should be {'posted' if expected == 2 else 'voided'} by its "
                    f"completion; the ledger has status {int(status[hold])}",
                )
        store = self.stores[0]
        touched = set(self.mirror.touched)
        for problem in self.mirror.compare_accounts(store):
            self._violate("ledger", problem)
        index = self.step.index if self.step is not None else -1
        if any(v.step == index and v.category.startswith("model.") for v in self.out.violations):
            return  # the model did not take this step: its money and windows would only echo it
        self._check_money(store, touched)
        self._check_windows()

    def _check_money(self, store: Store, touched: set[int] | None) -> None:
        """The model's accounts against the ledger: those the ledger or the model changed this
        step (`touched` None: all)."""
        ids = []
        for i, m in self.model.money.items():
            now = (m.credits_posted, m.debits_posted, m.debits_pending, m.credits_pending)
            if touched is None or i in touched or self.money_seen.get(i) != now:
                self.money_seen[i] = now
                ids.append(i)
        ids.sort()
        found = {a.id: a for a in store.lookup_accounts(ids)}
        for i in ids:
            want = self.model.money[i]
            a = found.get(i)
            if a is None:
                if want.credits_posted or want.debits_posted or want.debits_pending:
                    self._violate("model.money", f"account {i} is missing from the ledger")
                continue
            have = (a.credits_posted, a.debits_posted, a.debits_pending, a.credits_pending)
            expect = (
                want.credits_posted,
                want.debits_posted,
                want.debits_pending,
                want.credits_pending,
            )
            if have != expect:
                what = _account_name(self.model, i)
                self._violate(
                    "model.money",
                    f"{what}: the ledger has (credits posted, debits posted, debits pending, "
                    f"credits pending) {have}, the model expects {expect}",
                )

    def _check_windows(self) -> None:
        for key in sorted(self.model.touched_windows):
            log = self.model.windows[key]
            [used] = self.windows.used([(key, log.length)], log.seen)
            if used != log.used():
                self._violate(
                    "windows", f"window {key} counts {used} units, the model counts {log.used()}"
                )
            # M5 against the terms that took the units (a completion takes its excess under
            # the decision's plan version, whose limit may differ from the one in force now).
            if log.taken and not 0 <= used <= log.taken:
                self._violate(
                    "windows", f"window {key} counts {used} units, limit {log.taken} (M5)"
                )
            log.taken = 0

    def _deep_checks(self, step: Step) -> None:
        store = self.stores[0]
        for problem in self.mirror.compare_accounts(store, every=True):
            self._violate("ledger", problem)
        self._check_money(store, None)
        report = audit(store)
        for line in report.discrepancies:
            self._violate("audit", line)
        for problem in self.mirror.compare_journal(store):
            self._violate("ledger", problem)
        backlog = len(self.model.outbox)
        if report.backlog != backlog:
            self._violate(
                "audit", f"{report.backlog} usage events unsettled, the model has {backlog}"
            )


# -- helpers --------------------------------------------------------------------------------------

_FILES = [0]


def _next_file() -> int:
    _FILES[0] += 1
    return _FILES[0]


def _where(exc: BaseException) -> str:
    """Where an unexpected error was raised: the innermost frame's file and line."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return "?"
    code = tb.tb_frame.f_code
    path = Path(code.co_filename)
    short = "/".join(path.parts[-3:]) if len(path.parts) >= 3 else str(path)
    return f"raised at {short}:{tb.tb_lineno} in {code.co_name}"


def _detail(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    for name in ("reason", "field"):
        value = getattr(exc, name, None)
        if isinstance(value, str):
            return value
    return ""


def _detail_text(exc: BaseException | None) -> str:
    if exc is None:
        return ""
    detail = _detail(exc)
    return f" ({detail})" if detail else f" ({exc})"


def _parts(d: Decision) -> tuple[tuple[str, int, int, int, int], ...]:
    return tuple((p.layer, p.units, p.amount, p.transfer_id, p.account_id) for p in d.parts)


def _mparts(d: MDecision) -> tuple[tuple[str, int, int, int, int], ...]:
    return tuple((p.layer, p.units, p.amount, p.hold, p.account) for p in d.parts)


def _decision_fields(d: Decision) -> tuple[Any, ...]:
    return (
        d.decision_id,
        d.allowed,
        d.now,
        d.plan_version,
        d.price_version,
        d.price,
        d.timeout,
        _parts(d),
    )


def _mdecision_fields(d: MDecision) -> tuple[Any, ...]:
    return (
        d.decision_id,
        d.allowed,
        d.at,
        d.plan_version,
        d.price_version,
        d.price,
        d.timeout,
        _mparts(d),
    )


def _decision_matches(
    decision: Decision | None, error: BaseException | None, want: MDecision | Expected
) -> bool:
    if isinstance(want, Expected):
        return (
            error is not None
            and type(error).__name__ == want.kind
            and (not want.detail or _detail(error) == want.detail)
        )
    return decision is not None and _decision_fields(decision) == _mdecision_fields(want)


def _decision_diff(got: Decision, want: MDecision) -> str:
    names = (
        "id",
        "allowed",
        "evaluated at",
        "plan version",
        "price version",
        "price",
        "timeout",
        "parts",
    )
    diffs = []
    for name, have, expect in zip(
        names, _decision_fields(got), _mdecision_fields(want), strict=True
    ):
        if have != expect:
            if name == "parts":
                short = [(p[0], p[1], p[2]) for p in have], [(p[0], p[1], p[2]) for p in expect]
                if short[0] != short[1]:  # the layers differ: ids would only obscure that
                    have, expect = short
            if name == "evaluated at":
                have, expect = clock_text(have), clock_text(expect)
            diffs.append(f"{name}: engine {have}, model {expect}")
    return f"decision {want.customer}/{want.key}: " + "; ".join(diffs)


def _decision_text(d: Decision | None, error: BaseException | None) -> str:
    if d is None:
        return f"error {type(error).__name__}{_detail_text(error) if _detail(error) else ''}"
    if not d.allowed:
        return "refused (" + ",".join(r.code for r in d.reasons) + ")"
    return "allowed " + " ".join(f"{p.layer}:{p.units}" for p in d.parts)


def _completion_key(c: Completion) -> tuple[Any, ...]:
    charges = tuple(
        sorted((x.layer, x.units, x.amount, x.account_id if x.amount else 0) for x in c.charges)
    )
    return (
        c.decision_id,
        c.actual_units,
        c.usage_id,
        charges,
        c.written_off,
        tuple(sorted(c.transfer_ids)),
    )


def _completion_text(c: Completion | None, error: BaseException | None) -> str:
    if c is None:
        return f"error {type(error).__name__}"
    return (
        "charged " + " ".join(f"{x.layer}:{x.units}u/{x.amount}" for x in c.charges)
        if c.charges
        else "charged nothing"
    )


def _account_name(model: Model, account: int) -> str:
    if account == REVENUE:
        return "platform revenue"
    for customer in sorted(model.customers):
        if derive_id("credits", customer) == account:
            return f"credits of {customer}"
    for customer in sorted(model.grants):
        for g in model.grants[customer]:
            if g.account == account:
                return f"grant {g.name} of {customer}"
    for org in sorted(model.orgs):
        if derive_id("pool", org) == account:
            return f"pool of {org}"
        if derive_id("overage", org) == account:
            return f"overage of {org}"
    return f"account {account}"


def _ops_event(e: OpsEvent) -> Account | Transfer:
    if isinstance(e, OpsAccount):
        return Account(
            id=derive_id("sim-ops-account", e.n), ledger=OPS_LEDGER, code=e.code, flags=e.flags
        )
    assert isinstance(e, OpsTransfer)
    return Transfer(
        id=derive_id("sim-ops", e.n),
        debit_account_id=derive_id("sim-ops-account", e.dr) if e.dr else 0,
        credit_account_id=derive_id("sim-ops-account", e.cr) if e.cr else 0,
        amount=e.amount,
        pending_id=derive_id("sim-ops", e.pending) if e.pending else 0,
        timeout=e.timeout,
        ledger=e.ledger,
        code=e.code,
        flags=e.flags,
    )


def run_steps(
    config: Config,
    steps: Sequence[Step],
    store: str = "memory",
    directory: Path | None = None,
    *,
    audit_every: int = AUDIT_EVERY,
    keep_going: bool = False,
) -> Outcome:
    """Run `steps` (any subsequence of a generated trace) on a fresh engine; stops at the first
    step whose checks fail (unless `keep_going`)."""
    if directory is None:
        with tempfile.TemporaryDirectory(prefix="tollgate-sim-") as tmp:
            return run_steps(
                config, steps, store, Path(tmp), audit_every=audit_every, keep_going=keep_going
            )
    runner = Runner(config, store, directory, audit_every=audit_every)
    try:
        return runner.run(steps, keep_going=keep_going)
    finally:
        runner.close()


class ObservedWindows(MemoryWindows):
    """The nodes' shared windows, noting for each give-back (`keep`) whether it was made inside
    the store call an injected fault fails: what the harness needs to tell a settlement attempt
    that gave back before its commit failed from one that failed earlier."""

    def __init__(self, failing: Callable[[], bool]) -> None:
        super().__init__()
        self._failing = failing
        self.kept_at: list[bool] = []  # per give-back: inside the failing store call

    def keep(self, token: str, key: str, units: int) -> int:
        given = super().keep(token, key, units)
        if given:
            self.kept_at.append(self._failing())
        return given
