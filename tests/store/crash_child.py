"""The crash test's child process, the workload it applies, and the checks both sides share.

The child (`python -m tests.store.crash_child URL SEED LAST`) opens the store a URL names, finds
the last batch the store has committed, and applies the batches after it, up to LAST, printing
`begin k` before each `apply` and `end k` once it has returned. The parent SIGKILLs it at random
moments and restarts it; the child resumes from what the database says, never from what it
printed.

Batch k is a pure function of (seed, k) and is applied at `now = k` seconds. It starts with a
marker account `MARKER_BASE + k` that always succeeds, so "batch k is committed" is "marker k
exists", read through the `Store` interface alone: the same harness runs on any store URL.

`differences` and `violations` are the whole-state checks: the conformance suite and the crash
test compare a store with an in-memory `Ledger` through them.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable
from dataclasses import replace

from ledger import NS_PER_SECOND, Account, Expiry, Ledger, PendingStatus, Transfer
from ledger.store import Store, store_from_url
from specs import ledger as spec

Event = Account | Transfer

MARKER_BASE = 10**12
"""Account id of batch k's marker is MARKER_BASE + k."""

LINKED, PENDING, POST, VOID, BAL_DR, BAL_CR = 1, 2, 4, 8, 16, 32
DR_GUARD, CR_GUARD, HISTORY, CLOSED = 2, 4, 8, 16

BANK = 1  # funds the customers; unguarded
CUSTOMERS = (2, 3, 4, 5, 6)  # debits must not exceed credits
SUPPLIERS = (7, 8)  # credits must not exceed debits
HISTORY_ACCOUNTS = (9, 10)  # plain, with history
CLOSED_ACCOUNT = 11  # every transfer touching it fails (transient)
OTHER_LEDGER = 12  # ledger 2: transfers to it from ledger 1 fail
PLAIN = (13, 14, 15, 16)
MISSING = 99  # never created: transfers naming it fail (transient), ids remembered
ACCOUNT_IDS = (
    BANK,
    *CUSTOMERS,
    *SUPPLIERS,
    *HISTORY_ACCOUNTS,
    CLOSED_ACCOUNT,
    OTHER_LEDGER,
    *PLAIN,
)
LEDGER1 = (BANK, *CUSTOMERS, *SUPPLIERS, *HISTORY_ACCOUNTS, *PLAIN)

IDS_PER_BATCH = 1000  # transfer ids of batch k are k * IDS_PER_BATCH + 0..999
RESOLUTION_SLOT = 600  # posts and voids take slots 600..; replays reuse older batches' ids
CHAIN_SLOT = 800


def opening_accounts() -> list[Account]:
    flags = {c: DR_GUARD for c in CUSTOMERS} | {s: CR_GUARD for s in SUPPLIERS}
    flags |= {h: HISTORY for h in HISTORY_ACCOUNTS} | {CLOSED_ACCOUNT: CLOSED}
    return [
        Account(
            id=i,
            ledger=2 if i == OTHER_LEDGER else 1,
            code=1 + i % 3,
            flags=flags.get(i, 0) | (HISTORY if i in (CUSTOMERS[0], BANK) else 0),
            user_data=i,
        )
        for i in ACCOUNT_IDS
    ]


def _rng(seed: int, k: int, part: str) -> random.Random:
    return random.Random(f"{seed}:{k}:{part}")  # str seeds hash with sha512: stable everywhere


def plan(seed: int, k: int) -> list[Transfer]:
    """Batch k's new transfers (single-phase, pending, balancing), independent of other
    batches, so that later batches can post, void and replay them without regenerating the
    whole history."""
    if k < 2:
        return []
    rng = _rng(seed, k, "plan")
    size = rng.choice((0, 1, 3, 5, 8, 8, 12, 16)) if rng.random() > 0.04 else rng.randint(80, 300)
    out = []
    for slot in range(size):
        out.append(_new_transfer(rng, k * IDS_PER_BATCH + slot))
    return out


def _new_transfer(rng: random.Random, transfer_id: int) -> Transfer:
    kind = rng.choices(
        ("fund", "spend", "supply", "pending", "balancing", "plain", "missing", "closed", "cross"),
        weights=(4, 5, 2, 5, 2, 3, 1, 1, 1),
    )[0]
    debit, credit = {
        "fund": (BANK, rng.choice(CUSTOMERS)),
        "spend": (rng.choice(CUSTOMERS), rng.choice((BANK, *PLAIN))),
        "supply": (rng.choice(PLAIN), rng.choice(SUPPLIERS)),
        "pending": tuple(rng.sample(LEDGER1, 2)),
        "balancing": (rng.choice(CUSTOMERS), rng.choice(HISTORY_ACCOUNTS)),
        "plain": tuple(rng.sample((BANK, *HISTORY_ACCOUNTS, *PLAIN), 2)),
        "missing": (BANK, MISSING),
        "closed": (CLOSED_ACCOUNT, BANK),
        "cross": (BANK, OTHER_LEDGER),
    }[kind]
    flags = PENDING if kind == "pending" else BAL_DR if kind == "balancing" else 0
    if kind == "supply" and rng.random() < 0.3:
        flags = BAL_CR
    return Transfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=rng.choice((1, 5, 20, 60, 150, 400)),
        timeout=rng.choice((0, 1, 1, 2, 3)) if flags == PENDING else 0,
        ledger=1,
        code=1 + rng.randrange(2),
        user_data=rng.randrange(3),
        flags=flags,
    )


def batch(seed: int, k: int) -> list[Event]:
    """Batch k (k >= 1): its marker, then its plan, posts and voids of pending transfers of the
    four batches before (some expired, some already resolved), replays of their transfers
    (same body and altered), and linked chains (some failing, now and then one left open)."""
    rng = _rng(seed, k, "batch")
    marker = Account(id=MARKER_BASE + k, ledger=1, code=7, user_data=k)
    if k == 1:
        return [marker, *opening_accounts()]
    segments: list[list[Event]] = [[t] for t in plan(seed, k)]
    earlier = [t for d in range(1, 5) for t in plan(seed, k - d)]
    pendings = [t for t in earlier if t.flags & PENDING]
    slot = k * IDS_PER_BATCH + RESOLUTION_SLOT
    for _ in range(rng.randint(0, min(6, len(pendings)))):
        p = rng.choice(pendings)
        post = rng.random() < 0.6
        amount = rng.choice((p.amount, max(1, p.amount // 2))) if post else 0
        segments.append(
            [Transfer(id=slot, pending_id=p.id, amount=amount, flags=POST if post else VOID)]
        )
        slot += 1
    for _ in range(rng.randint(0, 3) if earlier else 0):
        t = rng.choice(earlier)
        segments.append([t if rng.random() < 0.6 else replace(t, amount=t.amount + 1)])
    chain_slot = k * IDS_PER_BATCH + CHAIN_SLOT
    for _ in range(rng.randint(0, 2)):
        chain = [_new_transfer(rng, chain_slot + i) for i in range(rng.randint(2, 4))]
        chain_slot += len(chain)
        segments.append([replace(t, flags=t.flags | LINKED) for t in chain[:-1]] + chain[-1:])
    rng.shuffle(segments)
    events: list[Event] = [marker, *(e for s in segments for e in s)]
    if rng.random() < 0.05:  # a chain left open at the end of the batch
        events.append(replace(_new_transfer(rng, chain_slot), flags=LINKED))
    return events


def now_of(k: int) -> int:
    return k * NS_PER_SECOND


def committed(store: Store, upto: int) -> list[int]:
    """The batch numbers in 1..upto whose marker account the store holds."""
    ids = [MARKER_BASE + k for k in range(1, upto + 1)]
    return [a.id - MARKER_BASE for a in store.lookup_accounts(ids)]


def last_committed(store: Store) -> int:
    """The last committed batch: markers are committed as a prefix, so a doubling then a
    binary search finds it in O(log k) lookups."""

    def has(k: int) -> bool:
        return bool(store.lookup_accounts([MARKER_BASE + k]))

    high = 1
    while has(high):
        high *= 2
    low = high // 2  # has(low) holds, or low == 0
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if has(middle) else (low, middle)
    return low


# --- what a store must show: the whole-state comparison and the invariants ------------------


def differences(
    store: Store,
    ledger: Ledger,
    account_ids: Iterable[int],
    transfer_ids: Iterable[int],
    journal: list[Account | Transfer | Expiry] | None = None,
) -> list[str]:
    """Every way the store's public reads differ from the ledger's (empty when they agree):
    accounts and transfers looked up (in the order asked, missing ids included), pending
    statuses, failed ids, account histories, and the journal entry by entry (`journal`: the
    store's, when the caller has read it already)."""
    problems = []
    accounts = list(account_ids)
    transfers = list(transfer_ids)
    asked = accounts + accounts[:1] + [0]  # a repeated id and an id that never exists
    want: list[Account | Transfer] = [
        a for i in asked if (a := ledger.lookup_account(i)) is not None
    ]
    if (got := store.lookup_accounts(asked)) != want:
        problems.append(f"lookup_accounts: store {got} != core {want}")
    asked = transfers[::-1] + transfers[:1]
    want = [t for i in asked if (t := ledger.lookup_transfer(i)) is not None]
    if (got_transfers := store.lookup_transfers(asked)) != want:
        problems.append(f"lookup_transfers: store {got_transfers} != core {want}")
    for i in transfers:
        if (status := store.pending_status(i)) != ledger.pending_status(i):
            problems.append(
                f"pending_status({i}): store {status!r} != {ledger.pending_status(i)!r}"
            )
    if (failed := store.failed_ids()) != ledger.failed_ids():
        problems.append(f"failed_ids: store {sorted(failed)} != core {sorted(ledger.failed_ids())}")
    for i in accounts:
        if (history := store.account_history(i)) != ledger.history(i):
            problems.append(f"account_history({i}): store {history} != core {ledger.history(i)}")
    stored = list(store.journal()) if journal is None else journal
    reference = ledger.journal()
    if stored != reference:  # records compare field by field, and by kind
        pairs = enumerate(zip(stored, reference, strict=False))
        at = next((n for n, (a, b) in pairs if a != b), min(len(stored), len(reference)))
        problems.append(
            f"journal differs at entry {at} (store has {len(stored)} entries, core "
            f"{len(reference)}): store {stored[at : at + 2]} != core {reference[at : at + 2]}"
        )
    return problems


def violations(
    store: Store,
    journal: list[Account | Transfer | Expiry] | None = None,
    pending_ids: Iterable[int] | None = None,
) -> list[str]:
    """The hash chain and the invariants of specs/ledger.py on the store's own journal, and
    the status of each pending transfer (or of those among `pending_ids`) against how the
    journal resolved it."""
    journal = list(store.journal()) if journal is None else journal
    accounts = [e for e in journal if type(e) is Account]
    transfers = [e for e in journal if type(e) is Transfer]
    expiries = [e for e in journal if type(e) is Expiry]
    problems = []
    report = store.verify_chain()
    if not report.ok or report.entries != len(journal):
        problems.append(f"verify_chain: {report} over {len(journal)} journal entries")
    if bad := spec.ledgers_balance(accounts):
        problems.append(f"L2: ledgers {bad} do not balance")
    if bad := spec.replay_mismatches(accounts, transfers, expiries):
        problems.append(f"L3: accounts {bad} differ from the replay of the journal")
    problems += spec.journal_violations(transfers, expiries)
    problems += [
        f"L1/L7: account {a.id} {a}" for a in accounts if not spec.account_within_limits(a)
    ]
    resolved = {t.pending_id: PendingStatus.POSTED for t in transfers if t.flags & POST}
    resolved |= {t.pending_id: PendingStatus.VOIDED for t in transfers if t.flags & VOID}
    resolved |= {e.pending_id: PendingStatus.EXPIRED for e in expiries}
    wanted = None if pending_ids is None else set(pending_ids)
    for t in transfers:
        if not t.flags & PENDING or (wanted is not None and t.id not in wanted):
            continue  # a transfer that is not pending: `differences` compares its status
        want = resolved.get(t.id, PendingStatus.PENDING)
        if (status := store.pending_status(t.id)) != want:
            problems.append(f"pending_status({t.id}) is {status!r}, the journal says {want!r}")
    return problems


# --- the child ---------------------------------------------------------------------------------


def run(url: str, seed: int, last: int) -> None:
    store = store_from_url(url)
    start = last_committed(store)
    print(f"start {start}", flush=True)
    for k in range(start + 1, last + 1):
        events = batch(seed, k)
        print(f"begin {k}", flush=True)
        store.apply(events, now_of(k))
        print(f"end {k}", flush=True)  # apply returned: from here on batch k must be durable
    store.close()
    print("done", flush=True)


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
