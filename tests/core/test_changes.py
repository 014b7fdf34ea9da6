"""`take_changes` and `load`: what a store persists and reloads is exactly the ledger.

A replica keeps only what `take_changes` reports; each batch is then applied to a ledger
`load`ed from the replica. Results must equal those of one long-lived ledger, and after every
batch the replica must equal that ledger's whole state.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings

from ledger import Account, AccountBalance, Expiry, Ledger, PendingStatus, Transfer
from ledger.core.engine import Changes
from ledger.core.errors import LedgerError

from .strategies import Event, scaled, scenarios


@dataclass
class Replica:
    accounts: dict[int, Account] = field(default_factory=dict)
    transfers: dict[int, Transfer] = field(default_factory=dict)
    statuses: dict[int, PendingStatus] = field(default_factory=dict)
    failed: set[int] = field(default_factory=set)
    expiries: list[Expiry] = field(default_factory=list)
    history: list[AccountBalance] = field(default_factory=list)
    timestamp: int = 0

    def persist(self, changes: Changes) -> None:
        for a in changes.accounts:
            self.accounts[a.id] = a
        for t in changes.transfers:
            assert t.id not in self.transfers, "a transfer is created once"
            self.transfers[t.id] = t
            if t.flags & 2:
                self.statuses[t.id] = PendingStatus.PENDING
        self.statuses.update(changes.statuses)
        assert not self.failed & set(changes.failed), "a failure is remembered once"
        self.failed |= set(changes.failed)
        self.expiries += changes.expiries
        self.history += changes.history
        self.timestamp = changes.timestamp

    def ledger(self) -> Ledger:
        return Ledger.load(
            accounts=self.accounts.values(),
            transfers=[
                (t, self.statuses.get(t.id, PendingStatus.NONE)) for t in self.transfers.values()
            ],
            failed=self.failed,
            timestamp=self.timestamp,
        )


def state_of(ledger: Ledger) -> tuple[object, ...]:
    transfers = list(ledger.transfers())
    history = sorted(
        (h for a in ledger.accounts() for h in ledger.history(a.id)),
        key=lambda h: (h.timestamp, h.account_id),
    )
    return (
        sorted(ledger.accounts(), key=lambda a: a.id),
        sorted(transfers, key=lambda t: t.id),
        {t.id: ledger.pending_status(t.id) for t in transfers if t.flags & 2},
        ledger.failed_ids(),
        ledger.expiries(),
        history,
        ledger.timestamp,
    )


def state_of_replica(r: Replica) -> tuple[object, ...]:
    return (
        sorted(r.accounts.values(), key=lambda a: a.id),
        sorted(r.transfers.values(), key=lambda t: t.id),
        dict(r.statuses),
        frozenset(r.failed),
        r.expiries,
        sorted(r.history, key=lambda h: (h.timestamp, h.account_id)),
        r.timestamp,
    )


@given(scenarios())
@settings(max_examples=scaled(2_000))
def test_a_replica_of_the_changes_is_the_ledger(scenario: list[tuple[list[Event], int]]) -> None:
    whole = Ledger()
    replica = Replica()
    for events, now in scenario:
        loaded = replica.ledger()
        try:
            expected = whole.apply(events, now)
        except LedgerError as error:
            try:
                loaded.apply(events, now)
            except LedgerError as same:
                assert str(same) == str(error)
                assert loaded.take_changes().transfers == ()
                continue
            raise AssertionError(
                "the loaded ledger accepted a batch the whole one refused"
            ) from error
        assert loaded.apply(events, now) == expected
        replica.persist(loaded.take_changes())
        assert state_of_replica(replica) == state_of(whole)


def test_changes_are_reported_once() -> None:
    ledger = Ledger()
    ledger.apply([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)], 1)
    first = ledger.take_changes()
    assert [a.id for a in first.accounts] == [1, 2]
    second = ledger.take_changes()
    assert second.accounts == () and second.transfers == () and second.failed == ()


def test_an_undone_chain_reports_no_account_and_no_transfer() -> None:
    ledger = Ledger()
    linked = Account(id=1, ledger=1, code=1, flags=1)
    bad = Transfer(id=9, debit_account_id=1, credit_account_id=5, amount=1, ledger=1, code=1)
    results = ledger.apply([linked, bad], 1)
    assert results[1].name == "CREDIT_ACCOUNT_NOT_FOUND"
    changes = ledger.take_changes()
    assert changes.accounts == () and changes.transfers == ()
    assert changes.failed == (9,)  # the transient failure stays remembered


def test_a_failed_chain_that_posted_its_own_hold_reports_no_status() -> None:
    """A linked chain that creates a pending transfer and posts it, then fails, leaves nothing:
    `take_changes` must not report a status for the undone hold."""
    from ledger.core import Account, Ledger, Result, Transfer, TransferFlags

    ledger = Ledger()
    ledger.apply([Account(id=1, ledger=1, code=1), Account(id=2, ledger=1, code=1)], 1)
    ledger.take_changes()
    linked, pending = int(TransferFlags.LINKED), int(TransferFlags.PENDING)
    results = ledger.apply(
        [
            Transfer(
                id=10,
                debit_account_id=1,
                credit_account_id=2,
                amount=5,
                ledger=1,
                code=1,
                flags=pending | linked,
            ),
            Transfer(
                id=11, pending_id=10, amount=5, flags=int(TransferFlags.POST_PENDING) | linked
            ),
            Transfer(id=12, debit_account_id=99, credit_account_id=2, amount=1, ledger=1, code=1),
        ],
        2,
    )
    assert results[2] is Result.DEBIT_ACCOUNT_NOT_FOUND
    assert results[0] is Result.LINKED_EVENT_FAILED
    changes = ledger.take_changes()
    assert changes.statuses == {} and changes.transfers == ()
    assert ledger.lookup_transfer(10) is None
