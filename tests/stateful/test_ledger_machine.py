"""Stateful test: the real engine (`Ledger`) against a tiny model written from the semantics.

The model (`Model`) is a few dicts and the rules as DESIGN.md adopts them from TigerBeetle
(research notes, ledger-anchors §1.1-1.6): result codes in their declared precedence (`Result`
is ordered, so the first check that holds is the smallest code), transient failures remembered,
linked chains all or nothing, expiries first in each batch, one timestamp per expiry and per
event. It shares no code with the engine; amounts stay far below any overflow (tests/core
covers those).

Account and transfer ids come from `Bundle`s so that they repeat: replays, retries of failed
ids and posts/voids of earlier pending transfers. After every step the invariants of
specs/ledger.py must hold on the engine, and the engine must agree with the model.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
)

from ledger import (
    ID_MAX,
    NS_PER_SECOND,
    Account,
    Ledger,
    Result,
    Transfer,
)
from specs import ledger as spec

R = Result
NS = NS_PER_SECOND
CI_MAX_EXAMPLES = 100  # the "ci" profile's base budget (tests/conftest.py)

# Flag bits, written out from the documented wire values rather than imported.
LINKED, PENDING, POST, VOID, BAL_DR, BAL_CR = 1, 2, 4, 8, 16, 32
DR_GUARD, CR_GUARD, HISTORY, CLOSED = 2, 4, 8, 16
TRANSFER_KNOWN, ACCOUNT_KNOWN = 63, 31
TRANSIENT = {
    R.DEBIT_ACCOUNT_NOT_FOUND,
    R.CREDIT_ACCOUNT_NOT_FOUND,
    R.PENDING_TRANSFER_NOT_FOUND,
    R.EXCEEDS_CREDITS,
    R.EXCEEDS_DEBITS,
    R.DEBIT_ACCOUNT_ALREADY_CLOSED,
    R.CREDIT_ACCOUNT_ALREADY_CLOSED,
}
STATUS = {"pending": 1, "posted": 2, "voided": 3, "expired": 4}


def first(*checks: tuple[object, Result]) -> Result | None:
    """The code of highest precedence among the checks that hold (codes are declared in
    precedence order), or None."""
    return min((code for holds, code in checks if holds), default=None)


# --- the model ---------------------------------------------------------------------------------


class Model:
    """The ledger as plain dicts. Accounts and transfers are dicts of their fields."""

    def __init__(self) -> None:
        self.accounts: dict[int, dict[str, int]] = {}
        self.transfers: dict[int, dict[str, int]] = {}
        self.status: dict[int, str] = {}
        self.deadline: dict[int, int] = {}
        self.failed: set[int] = set()
        self.timestamp = 0
        self.expiries: list[tuple[int, int, int]] = []
        self.history: dict[int, list[tuple[int, ...]]] = {}

    # The batch.

    def apply(self, events: Sequence[Account | Transfer], now: int) -> list[Result]:
        ts = max(now, self.timestamp + 1)
        due = sorted(
            (self.deadline[i], self.transfers[i]["timestamp"], i)
            for i, s in self.status.items()
            if s == "pending" and i in self.deadline and self.deadline[i] <= ts
        )
        for _, _, i in due:
            p = self.transfers[i]
            self._move(p["debit_account_id"], p["credit_account_id"], pending=-p["amount"])
            self.status[i] = "expired"
            self.expiries.append((i, p["amount"], ts))
            self._keep_history(p["debit_account_id"], p["credit_account_id"], ts)
            ts += 1
        results: list[Result] = []
        start = 0
        while start < len(events):
            end = start
            while end < len(events) and events[end].flags & LINKED:
                end += 1
            if end == len(events):
                results += [R.LINKED_EVENT_FAILED] * (end - start - 1)
                results.append(R.LINKED_EVENT_CHAIN_OPEN)
                break
            results += self._chain(events[start : end + 1], ts + start)
            start = end + 1
        if events or due:
            self.timestamp = ts + len(events) - 1
        return results

    def _chain(self, chain: Sequence[Account | Transfer], ts: int) -> list[Result]:
        saved = copy.deepcopy(
            (self.accounts, self.transfers, self.status, self.deadline, self.history)
        )
        for k, event in enumerate(chain):
            code = self._event(event, ts + k)
            if code != R.OK:
                if len(chain) > 1:
                    (self.accounts, self.transfers, self.status, self.deadline, self.history) = (
                        saved
                    )
                codes = [R.LINKED_EVENT_FAILED] * len(chain)
                codes[k] = code
                return codes
        return [R.OK] * len(chain)

    def _event(self, event: Account | Transfer, ts: int) -> Result:
        if isinstance(event, Account):
            return self._account(event, ts)
        code = self._transfer(event, ts)
        if code in TRANSIENT:
            self.failed.add(event.id)
        return code

    # Accounts.

    def _account(self, a: Account, ts: int) -> Result:
        code = (
            first(
                (a.timestamp != 0, R.TIMESTAMP_MUST_BE_ZERO),
                (a.flags & ~ACCOUNT_KNOWN != 0, R.RESERVED_FLAG),
                (a.id == 0, R.ID_MUST_NOT_BE_ZERO),
                (a.id == ID_MAX, R.ID_MUST_NOT_BE_INT_MAX),
            )
            or self._account_exists(a)
            or first(
                (a.flags & DR_GUARD and a.flags & CR_GUARD, R.FLAGS_ARE_MUTUALLY_EXCLUSIVE),
                (a.debits_pending != 0, R.DEBITS_PENDING_MUST_BE_ZERO),
                (a.debits_posted != 0, R.DEBITS_POSTED_MUST_BE_ZERO),
                (a.credits_pending != 0, R.CREDITS_PENDING_MUST_BE_ZERO),
                (a.credits_posted != 0, R.CREDITS_POSTED_MUST_BE_ZERO),
                (a.ledger == 0, R.LEDGER_MUST_NOT_BE_ZERO),
                (a.code == 0, R.CODE_MUST_NOT_BE_ZERO),
            )
        )
        if code:
            return code
        self.accounts[a.id] = dict(
            ledger=a.ledger,
            code=a.code,
            flags=a.flags,
            user_data=a.user_data,
            dp=0,
            dpo=0,
            cp=0,
            cpo=0,
            timestamp=ts,
        )
        if a.flags & HISTORY:
            self.history[a.id] = []
        return R.OK

    def _account_exists(self, a: Account) -> Result | None:
        e = self.accounts.get(a.id)
        if e is None:
            return None
        return (
            first(
                (a.flags != e["flags"], R.EXISTS_WITH_DIFFERENT_FLAGS),
                (a.user_data != e["user_data"], R.EXISTS_WITH_DIFFERENT_USER_DATA),
                (a.ledger != e["ledger"], R.EXISTS_WITH_DIFFERENT_LEDGER),
                (a.code != e["code"], R.EXISTS_WITH_DIFFERENT_CODE),
            )
            or R.EXISTS
        )

    # Transfers.

    def _transfer(self, t: Transfer, ts: int) -> Result:
        resolving = t.flags & (POST | VOID) != 0
        code = (
            first(
                (t.timestamp != 0, R.TIMESTAMP_MUST_BE_ZERO),
                (t.flags & ~TRANSFER_KNOWN != 0, R.RESERVED_FLAG),
                (t.id == 0, R.ID_MUST_NOT_BE_ZERO),
                (t.id == ID_MAX, R.ID_MUST_NOT_BE_INT_MAX),
            )
            or self._exists(t, resolving)
            or first(
                (t.id in self.failed, R.ID_ALREADY_FAILED),
            )
            or self._validate(t, resolving)
        )
        if code:
            return code
        p = self.transfers.get(t.pending_id) if resolving else None
        if resolving:
            code = self._check_pending(t, p, ts)
            if code:
                return code
        return self._check_accounts_and_apply(t, p, ts)

    def _exists(self, t: Transfer, resolving: bool) -> Result | None:
        e = self.transfers.get(t.id)
        if e is None:
            return None

        def differs(name: str) -> bool:  # on a post or void, zero means "as the pending"
            given = getattr(t, name)
            return given != e[name] and not (resolving and given == 0)

        if t.flags & (BAL_DR | BAL_CR):
            amount_differs = t.amount < e["amount"]  # may ask for more than it moved
        elif t.flags & VOID:
            amount_differs = t.amount not in (0, e["amount"])
        else:
            amount_differs = t.amount != e["amount"]
        return (
            first(
                (t.flags != e["flags"], R.EXISTS_WITH_DIFFERENT_FLAGS),
                (t.pending_id != e["pending_id"], R.EXISTS_WITH_DIFFERENT_PENDING_ID),
                (t.timeout != e["timeout"], R.EXISTS_WITH_DIFFERENT_TIMEOUT),
                (differs("debit_account_id"), R.EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID),
                (differs("credit_account_id"), R.EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID),
                (amount_differs, R.EXISTS_WITH_DIFFERENT_AMOUNT),
                (t.user_data != e["user_data"], R.EXISTS_WITH_DIFFERENT_USER_DATA),
                (differs("ledger"), R.EXISTS_WITH_DIFFERENT_LEDGER),
                (differs("code"), R.EXISTS_WITH_DIFFERENT_CODE),
            )
            or R.EXISTS
        )

    @staticmethod
    def _validate(t: Transfer, resolving: bool) -> Result | None:
        kinds = sum(1 for bit in (PENDING, POST, VOID) if t.flags & bit)
        dr, cr = t.debit_account_id, t.credit_account_id
        return first(
            (
                kinds > 1 or (resolving and t.flags & (BAL_DR | BAL_CR) != 0),
                R.FLAGS_ARE_MUTUALLY_EXCLUSIVE,
            ),
            (not resolving and dr == 0, R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
            (dr == ID_MAX, R.DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX),
            (not resolving and cr == 0, R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO),
            (cr == ID_MAX, R.CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX),
            (dr == cr != 0, R.ACCOUNTS_MUST_BE_DIFFERENT),
            (not resolving and t.pending_id != 0, R.PENDING_ID_MUST_BE_ZERO),
            (resolving and t.pending_id == 0, R.PENDING_ID_MUST_NOT_BE_ZERO),
            (resolving and t.pending_id == ID_MAX, R.PENDING_ID_MUST_NOT_BE_INT_MAX),
            (resolving and t.pending_id == t.id, R.PENDING_ID_MUST_BE_DIFFERENT),
            (not t.flags & PENDING and t.timeout != 0, R.TIMEOUT_RESERVED_FOR_PENDING_TRANSFER),
            (not t.flags & VOID and t.amount == 0, R.AMOUNT_MUST_NOT_BE_ZERO),
            (not resolving and t.ledger == 0, R.LEDGER_MUST_NOT_BE_ZERO),
            (not resolving and t.code == 0, R.CODE_MUST_NOT_BE_ZERO),
        )

    def _check_pending(self, t: Transfer, p: dict[str, int] | None, ts: int) -> Result | None:
        if p is None:
            return R.PENDING_TRANSFER_NOT_FOUND
        status = self.status.get(t.pending_id)

        def other(name: str) -> bool:
            return getattr(t, name) not in (0, p[name])

        return first(
            (status is None, R.PENDING_TRANSFER_NOT_PENDING),
            (other("debit_account_id"), R.PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID),
            (other("credit_account_id"), R.PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID),
            (other("ledger"), R.PENDING_TRANSFER_HAS_DIFFERENT_LEDGER),
            (other("code"), R.PENDING_TRANSFER_HAS_DIFFERENT_CODE),
            (t.flags & POST != 0 and t.amount > p["amount"], R.EXCEEDS_PENDING_TRANSFER_AMOUNT),
            (t.flags & VOID != 0 and other("amount"), R.PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT),
            (status == "posted", R.PENDING_TRANSFER_ALREADY_POSTED),
            (status == "voided", R.PENDING_TRANSFER_ALREADY_VOIDED),
            (
                status == "expired" or self.deadline.get(t.pending_id, ts + 1) <= ts,
                R.PENDING_TRANSFER_EXPIRED,
            ),
        )

    def _check_accounts_and_apply(self, t: Transfer, p: dict[str, int] | None, ts: int) -> Result:
        source = p if p is not None else dataclasses.asdict(t)
        dr_id, cr_id = source["debit_account_id"], source["credit_account_id"]
        dr, cr = self.accounts.get(dr_id), self.accounts.get(cr_id)
        if dr is None or cr is None:
            return R.DEBIT_ACCOUNT_NOT_FOUND if dr is None else R.CREDIT_ACCOUNT_NOT_FOUND
        void = t.flags & VOID != 0
        released = p["amount"] if p is not None else 0
        moved = released if void else self._balanced(t, dr, cr)
        pending = moved if t.flags & PENDING else 0
        posted = 0 if void or t.flags & PENDING else moved
        # Guards hold on the totals after the event (amounts here are far below any overflow,
        # which tests/core covers).
        after_dr = (dr["dp"] - released + pending, dr["dpo"] + posted)
        after_cr = (cr["cp"] - released + pending, cr["cpo"] + posted)
        code = first(
            (dr["ledger"] != cr["ledger"], R.ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER),
            (source["ledger"] != dr["ledger"], R.TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS),
            (not void and dr["flags"] & CLOSED != 0, R.DEBIT_ACCOUNT_ALREADY_CLOSED),
            (not void and cr["flags"] & CLOSED != 0, R.CREDIT_ACCOUNT_ALREADY_CLOSED),
            (dr["flags"] & DR_GUARD != 0 and sum(after_dr) > dr["cpo"], R.EXCEEDS_CREDITS),
            (t.flags & BAL_DR != 0 and moved == 0, R.EXCEEDS_CREDITS),
            (cr["flags"] & CR_GUARD != 0 and sum(after_cr) > cr["dpo"], R.EXCEEDS_DEBITS),
            (t.flags & BAL_CR != 0 and moved == 0, R.EXCEEDS_DEBITS),
        )
        if code:
            return code
        self._move(dr_id, cr_id, pending=pending - released, posted=posted)
        if p is not None:
            self.status[t.pending_id] = "voided" if void else "posted"
        if t.flags & PENDING:
            self.status[t.id] = "pending"
            if t.timeout:
                self.deadline[t.id] = ts + t.timeout * NS
        self.transfers[t.id] = dict(
            debit_account_id=dr_id,
            credit_account_id=cr_id,
            amount=moved,
            pending_id=t.pending_id,
            timeout=t.timeout,
            ledger=source["ledger"],
            code=source["code"],
            user_data=t.user_data,
            flags=t.flags,
            timestamp=ts,
        )
        self._keep_history(dr_id, cr_id, ts)
        return R.OK

    @staticmethod
    def _balanced(t: Transfer, dr: dict[str, int], cr: dict[str, int]) -> int:
        amount = t.amount
        if t.flags & BAL_DR:
            amount = min(amount, max(0, dr["cpo"] - dr["dpo"] - dr["dp"]))
        if t.flags & BAL_CR:
            amount = min(amount, max(0, cr["dpo"] - cr["cpo"] - cr["cp"]))
        return amount

    def _move(self, dr_id: int, cr_id: int, pending: int = 0, posted: int = 0) -> None:
        self.accounts[dr_id]["dp"] += pending
        self.accounts[dr_id]["dpo"] += posted
        self.accounts[cr_id]["cp"] += pending
        self.accounts[cr_id]["cpo"] += posted

    def _keep_history(self, dr_id: int, cr_id: int, ts: int) -> None:
        for i in (dr_id, cr_id):
            if i in self.history:
                a = self.accounts[i]
                self.history[i].append((ts, a["dp"], a["dpo"], a["cp"], a["cpo"]))

    # The common form for comparing with the engine.

    def view(self) -> dict[str, Any]:
        return {
            "accounts": {i: dict(a) for i, a in self.accounts.items()},
            "transfers": {i: dict(t) for i, t in self.transfers.items()},
            "status": {i: STATUS[s] for i, s in self.status.items()},
            "failed": set(self.failed),
            "timestamp": self.timestamp,
            "expiries": list(self.expiries),
            "history": {i: list(h) for i, h in self.history.items()},
        }


def engine_view(ledger: Ledger) -> dict[str, Any]:
    accounts = list(ledger.accounts())
    transfers = list(ledger.transfers())
    return {
        "accounts": {
            a.id: dict(
                ledger=a.ledger,
                code=a.code,
                flags=int(a.flags),
                user_data=a.user_data,
                dp=a.debits_pending,
                dpo=a.debits_posted,
                cp=a.credits_pending,
                cpo=a.credits_posted,
                timestamp=a.timestamp,
            )
            for a in accounts
        },
        "transfers": {
            t.id: {f.name: int(getattr(t, f.name)) for f in dataclasses.fields(t) if f.name != "id"}
            for t in transfers
        },
        "status": {
            t.id: int(ledger.pending_status(t.id)) for t in transfers if ledger.pending_status(t.id)
        },
        "failed": set(ledger.failed_ids()),
        "timestamp": ledger.timestamp,
        "expiries": [(e.pending_id, e.amount, e.timestamp) for e in ledger.expiries()],
        "history": {
            a.id: [
                (
                    h.timestamp,
                    h.debits_pending,
                    h.debits_posted,
                    h.credits_pending,
                    h.credits_posted,
                )
                for h in ledger.history(a.id)
            ]
            for a in accounts
            if a.flags & HISTORY
        },
    }


# --- the machine -------------------------------------------------------------------------------

account_ids = st.integers(1, 6)
transfer_ids = st.integers(1, 80)
amounts = st.integers(1, 40)
user_data = st.sampled_from((0, 0, 1))
account_flags = st.sampled_from((0, 0, DR_GUARD, DR_GUARD, CR_GUARD)).flatmap(
    lambda guard: st.sampled_from((guard, guard | HISTORY))
)
BANK = 100  # an unguarded account outside the bundle that funds the others
TILL = 101  # another account without flags: a transfer from BANK to TILL is as plain as can be


class LedgerMachine(RuleBasedStateMachine):
    accounts = Bundle("accounts")
    transfers = Bundle("transfers")  # created single-phase transfers, posts and voids
    pendings = Bundle("pendings")  # created pending transfers

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger()
        self.model = Model()
        self.now = 10 * NS
        self.submitted: dict[int, Transfer] = {}  # id -> the body that created it
        self.failed_bodies: dict[int, Transfer] = {}

    def apply(self, events: list[Account | Transfer]) -> list[Result]:
        expected = self.model.apply(events, self.now)
        results = self.ledger.apply(events, self.now)
        assert results == expected, (events, results, expected)
        for event, code in zip(events, results, strict=True):
            if isinstance(event, Transfer) and code == R.OK:
                self.submitted[event.id] = event
            if isinstance(event, Transfer) and code in TRANSIENT:
                self.failed_bodies[event.id] = event
        return results

    def transfer_one(self, t: Transfer, bundle: bool = True) -> Any:
        (code,) = self.apply([t])
        return t.id if code == R.OK and bundle else multiple()

    # Accounts.

    @initialize(target=accounts, flags=st.lists(account_flags, min_size=3, max_size=3))
    def open_accounts(self, flags: list[int]) -> Any:
        events = [Account(id=BANK, ledger=1, code=1), Account(id=TILL, ledger=1, code=1)]
        events += [Account(id=i + 1, ledger=1, code=1, flags=f) for i, f in enumerate(flags)]
        assert self.apply(events) == [R.OK] * 5
        return multiple(1, 2, 3)

    @rule(
        target=accounts,
        id=account_ids,
        ledger=st.sampled_from((1, 1, 1, 1, 1, 2)),
        guard=st.sampled_from((0, 0, DR_GUARD, CR_GUARD)),
        history=st.booleans(),
        closed=st.sampled_from((0,) * 6 + (CLOSED,)),
        user_data=user_data,
    )
    def open_account(
        self, id: int, ledger: int, guard: int, history: bool, closed: int, user_data: int
    ) -> Any:
        flags = guard | (HISTORY if history else 0) | closed
        self.apply([Account(id=id, ledger=ledger, code=1, flags=flags, user_data=user_data)])
        return id if id in self.model.accounts else multiple()

    # Transfers.

    @rule(
        target=transfers,
        id=transfer_ids,
        dr=accounts,
        cr=accounts,
        amount=amounts,
        kind=st.sampled_from(
            (
                "plain",
                "plain",
                "fund",
                "spend",
                "balancing_debit",
                "balancing_credit",
                "missing_account",
            )
        ),
        user_data=user_data,
    )
    def single(self, id: int, dr: int, cr: int, amount: int, kind: str, user_data: int) -> Any:
        """A single-phase transfer: between two accounts, from or to the bank, balancing, or
        to an account that does not exist (a transient failure)."""
        dr = BANK if kind == "fund" else dr
        cr = {"spend": BANK, "missing_account": 99}.get(kind, cr)
        flags = {"balancing_debit": BAL_DR, "balancing_credit": BAL_CR}.get(kind, 0)
        return self.transfer_one(
            Transfer(
                id=id,
                debit_account_id=dr,
                credit_account_id=cr,
                amount=amount,
                ledger=1,
                code=1,
                user_data=user_data,
                flags=flags,
            )
        )

    @rule(
        target=pendings,
        id=transfer_ids,
        dr=accounts,
        cr=accounts,
        amount=amounts,
        timeout=st.sampled_from((0, 1, 1, 2, 3)),
        balancing=st.sampled_from((0, 0, 0, BAL_DR)),
    )
    def pending(self, id: int, dr: int, cr: int, amount: int, timeout: int, balancing: int) -> Any:
        return self.transfer_one(
            Transfer(
                id=id,
                debit_account_id=dr,
                credit_account_id=cr,
                amount=amount,
                ledger=1,
                code=1,
                timeout=timeout,
                flags=PENDING | balancing,
            )
        )

    @rule(
        target=transfers,
        id=transfer_ids,
        pending_id=pendings,
        part=st.sampled_from(("full", "full", "partial", "over")),
    )
    def post(self, id: int, pending_id: int, part: str) -> Any:
        held = self.model.transfers[pending_id]["amount"]
        amount = {"full": held, "partial": max(1, held // 2), "over": held + 1}[part]
        return self.transfer_one(Transfer(id=id, pending_id=pending_id, amount=amount, flags=POST))

    @rule(
        target=transfers,
        id=transfer_ids,
        pending_id=pendings,
        part=st.sampled_from(("zero", "zero", "exact", "other")),
    )
    def void(self, id: int, pending_id: int, part: str) -> Any:
        held = self.model.transfers[pending_id]["amount"]
        amount = {"zero": 0, "exact": held, "other": held + 1}[part]
        return self.transfer_one(Transfer(id=id, pending_id=pending_id, amount=amount, flags=VOID))

    # Replays and retries.

    @rule(id=st.one_of(transfers, pendings))
    def replay_same_body(self, id: int) -> None:
        transfers, failed = dict(self.model.transfers), set(self.model.failed)
        assert self.apply([self.submitted[id]]) == [R.EXISTS]
        assert (self.model.transfers, self.model.failed) == (transfers, failed)

    @rule(
        id=st.one_of(transfers, pendings),
        field=st.sampled_from(
            (
                "flags",
                "pending_id",
                "timeout",
                "debit_account_id",
                "credit_account_id",
                "amount",
                "user_data",
                "ledger",
                "code",
            )
        ),
        delta=st.integers(1, 3),
    )
    def replay_changed_body(self, id: int, field: str, delta: int) -> None:
        body = self.submitted[id]
        value = getattr(body, field)
        value = value ^ delta << 1 if field == "flags" else value + delta  # never flips LINKED
        transfers_before = self.model.view()["transfers"]
        (code,) = self.apply([dataclasses.replace(body, **{field: value})])
        assert code.name.startswith("EXISTS"), code
        assert self.model.view()["transfers"] == transfers_before

    @precondition(lambda self: self.failed_bodies)
    @rule(data=st.data(), amount=amounts)
    def retry_failed_id(self, data: st.DataObject, amount: int) -> None:
        failed_id = data.draw(st.sampled_from(sorted(self.failed_bodies)))
        body = self.failed_bodies[failed_id]
        body = dataclasses.replace(body, flags=body.flags & ~LINKED)  # it may come from a chain
        corrected = Transfer(
            id=failed_id,
            debit_account_id=BANK,
            credit_account_id=TILL,
            amount=amount,
            ledger=1,
            code=1,
        )
        for retry in (body, dataclasses.replace(body, amount=amount), corrected):
            assert self.apply([retry]) == [R.ID_ALREADY_FAILED]

    # Linked chains.

    @rule(
        data=st.data(),
        size=st.integers(2, 3),
        failing=st.sampled_from((None, 0, 1, 2)),
        left_open=st.sampled_from((False, False, False, True)),
    )
    def chain(self, data: st.DataObject, size: int, failing: int | None, left_open: bool) -> None:
        """A linked chain of accounts, transfers and pending transfers; one member may be made
        to fail on purpose (invalid ledger, missing account), and the chain may be left open."""
        events: list[Account | Transfer] = []
        for index in range(size):
            kind = data.draw(st.sampled_from(("account", "transfer", "pending")))
            if kind == "account":
                event: Account | Transfer = Account(id=data.draw(account_ids), ledger=1, code=1)
            else:
                dr, cr = data.draw(st.permutations(sorted(self.model.accounts)))[:2]
                event = Transfer(
                    id=data.draw(transfer_ids),
                    debit_account_id=dr,
                    credit_account_id=cr,
                    amount=data.draw(amounts),
                    ledger=1,
                    code=1,
                    flags=PENDING if kind == "pending" else 0,
                )
            if index == failing and kind == "account":
                event = dataclasses.replace(event, ledger=0)
            elif index == failing:
                event = dataclasses.replace(event, credit_account_id=98)
            if index < size - 1 or left_open:
                event = dataclasses.replace(event, flags=event.flags | LINKED)
            events.append(event)
        results = self.apply(events)
        assert spec.chain_all_or_nothing([results])
        if left_open:
            assert results == [R.LINKED_EVENT_FAILED] * (size - 1) + [R.LINKED_EVENT_CHAIN_OPEN]
        elif failing is not None and failing < size:
            assert R.OK not in results

    # Time.

    @rule(
        seconds=st.sampled_from((0, 1, 1, 2, 2, 3, 4, -3)),
        nanoseconds=st.sampled_from((0, 0, 1, -1)),
        batch=st.booleans(),
    )
    def advance_time(self, seconds: int, nanoseconds: int, batch: bool) -> None:
        """Move the clock (now and then backwards), with or without an empty batch (which
        performs the expiries that are due)."""
        self.now = max(0, self.now + seconds * NS + nanoseconds)
        if batch:
            assert self.apply([]) == []

    @rule(
        id=transfer_ids,
        pending_id=pendings,
        offset=st.sampled_from((-1, 0, 0, 1)),
        then=st.sampled_from(("post", "void", "nothing")),
        filler=st.booleans(),
    )
    def reach_the_deadline(
        self, id: int, pending_id: int, offset: int, then: str, filler: bool
    ) -> None:
        """Set the clock so that a post or void (or an empty batch) lands on a pending
        transfer's deadline or 1 ns off it; with `filler`, the post is the batch's second event
        (the bank's account replayed first), so the deadline falls inside the batch."""
        deadline = self.model.deadline.get(pending_id)
        if deadline is None:
            return
        self.now = max(self.now, deadline + offset - (1 if filler else 0))
        held = self.model.transfers[pending_id]["amount"]
        flags = {"post": POST, "void": VOID}.get(then)
        events: list[Account | Transfer] = [Account(id=BANK, ledger=1, code=1)] if filler else []
        if flags is not None:
            events.append(Transfer(id=id, pending_id=pending_id, amount=held, flags=flags))
        self.apply(events)

    # Invariants (specs/ledger.py) and agreement with the model.

    @invariant()
    def accounts_within_limits(self) -> None:
        assert [a.id for a in self.ledger.accounts() if not spec.account_within_limits(a)] == []

    @invariant()
    def ledgers_balance(self) -> None:
        assert spec.ledgers_balance(self.ledger.accounts()) == []

    @invariant()
    def state_is_the_replay_of_the_journal(self) -> None:
        mismatches = spec.replay_mismatches(
            self.ledger.accounts(), self.ledger.transfers(), self.ledger.expiries()
        )
        assert mismatches == []

    @invariant()
    def journal_is_sound(self) -> None:
        assert spec.journal_violations(self.ledger.transfers(), self.ledger.expiries()) == []

    @invariant()
    def engine_agrees_with_the_model(self) -> None:
        assert engine_view(self.ledger) == self.model.view()


TestLedgerMachine = LedgerMachine.TestCase
TestLedgerMachine.settings = settings(
    max_examples=max(1, 200 * settings.default.max_examples // CI_MAX_EXAMPLES),
    stateful_step_count=30,
)
