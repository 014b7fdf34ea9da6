"""The reference ledger: the transition kernel run on plain Python values, batch by batch.

Slow (every write copies a map) and obviously faithful to the kernel, which is what proofs/
proves. The fast engine (`ledger.core.engine.Ledger`) is tested against this on random batches.
The batch structure (timestamps, expiries first, linked chains) is the same as the engine's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.core import kernel
from ledger.core.errors import InvalidTimeError
from ledger.core.flags import ACCOUNT_FLAGS_KNOWN, TRANSFER_FLAGS_KNOWN, AccountFlags
from ledger.core.flags import TransferFlags as TF
from ledger.core.limits import TIMESTAMP_MAX_NS
from ledger.core.ops import CONCRETE
from ledger.core.results import Result
from ledger.core.types import Account, Transfer
from ledger.core.validate import check_batch


def account_event(a: Account) -> kernel.AccountEvent:
    f = a.flags
    return kernel.AccountEvent(
        id=a.id,
        ledger=a.ledger,
        code=a.code,
        user_data=a.user_data,
        linked=bool(f & AccountFlags.LINKED),
        debits_guard=bool(f & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
        credits_guard=bool(f & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
        history=bool(f & AccountFlags.HISTORY),
        closed=bool(f & AccountFlags.CLOSED),
        reserved_flags=bool(f & ~ACCOUNT_FLAGS_KNOWN),
        debits_pending=a.debits_pending,
        debits_posted=a.debits_posted,
        credits_pending=a.credits_pending,
        credits_posted=a.credits_posted,
        timestamp=a.timestamp,
    )


def transfer_event(t: Transfer) -> kernel.TransferEvent:
    f = t.flags
    return kernel.TransferEvent(
        id=t.id,
        debit_account_id=t.debit_account_id,
        credit_account_id=t.credit_account_id,
        amount=t.amount,
        pending_id=t.pending_id,
        timeout=t.timeout,
        ledger=t.ledger,
        code=t.code,
        user_data=t.user_data,
        linked=bool(f & TF.LINKED),
        pending=bool(f & TF.PENDING),
        post_pending=bool(f & TF.POST_PENDING),
        void_pending=bool(f & TF.VOID_PENDING),
        balancing_debit=bool(f & TF.BALANCING_DEBIT),
        balancing_credit=bool(f & TF.BALANCING_CREDIT),
        reserved_flags=bool(f & ~TRANSFER_FLAGS_KNOWN),
        timestamp=t.timestamp,
    )


def kernel_event(event: Account | Transfer) -> kernel.AccountEvent | kernel.TransferEvent:
    return transfer_event(event) if isinstance(event, Transfer) else account_event(event)


@dataclass(frozen=True, slots=True)
class ReferenceLedger:
    """An immutable ledger value: the kernel state."""

    state: kernel.KernelState

    @staticmethod
    def empty() -> ReferenceLedger:
        return ReferenceLedger(kernel.empty_state())

    def apply(
        self, events: Sequence[Account | Transfer], now: int
    ) -> tuple[ReferenceLedger, list[Result]]:
        check_batch(events, now)
        s = self.state
        start = max(now, s.timestamp + 1)
        due = _due(s, start)
        if due or events:
            last = start + len(due) + len(events) - 1
            if last > TIMESTAMP_MAX_NS:
                raise InvalidTimeError("the ledger's clock would pass TIMESTAMP_MAX_NS")
        s, ts = _expire(s, due, start)
        results: list[Result] = []
        index = 0
        while index < len(events):
            end = index
            while end < len(events) and events[end].flags & TF.LINKED:
                end += 1
            if end == len(events):  # the chain is never closed: nothing of it is applied
                results += [Result.LINKED_EVENT_FAILED] * (end - index - 1)
                results.append(Result.LINKED_EVENT_CHAIN_OPEN)
            else:
                chain = [kernel_event(e) for e in events[index : end + 1]]
                if len(chain) == 1:
                    s, code = kernel.step(s, chain[0], ts + index, CONCRETE)
                    codes = [code]
                else:
                    s, codes = kernel.apply_chain(s, chain, ts + index, CONCRETE)
                results += [Result(c) for c in codes]
            index = end + 1
        if events or ts != start:
            s = _with_timestamp(s, ts + len(events) - 1)
        return ReferenceLedger(s), results


def _with_timestamp(s: kernel.KernelState, ts: int) -> kernel.KernelState:
    import dataclasses

    return dataclasses.replace(s, timestamp=ts)


def _due(s: kernel.KernelState, cutoff: int) -> list[tuple[int, int, int]]:
    """The pending transfers due at `cutoff`, in order of (expiry, creation, id)."""
    return sorted(
        (s.transfer_expires_at[i], s.transfer_timestamp[i], i)
        for i, status in s.transfer_status.items()
        if status == kernel.STATUS_PENDING and 0 != s.transfer_expires_at[i] <= cutoff
    )


def _expire(
    s: kernel.KernelState, due: list[tuple[int, int, int]], cutoff: int
) -> tuple[kernel.KernelState, int]:
    """Expire `due` in order, each taking a timestamp from `cutoff` on. Returns the state and
    the next free timestamp."""
    ts = cutoff
    for _, _, pending_id in due:
        s, expired = kernel.expire_pending(s, pending_id, ts, CONCRETE)
        assert expired
        ts += 1
    return s, ts
