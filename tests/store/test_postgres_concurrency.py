"""Eight processes write to one PostgreSQL database at once, and the outcome is serial.

Every worker (a `spawn`ed process with its own `PostgresStore`) submits its own sequence of
batches, all drawn from one shared pool of transfer ids whose bodies are a function of the id
(now and then altered), so workers race to create the same transfers, post and void the same
pending transfers, and overdraw the same guarded accounts. Each batch starts with a marker
account of its own, so the timestamp the database gave the marker tells where the batch was
applied in the order the database chose.

Afterwards: no worker saw an exception; every transfer id is in the database once and was
reported OK to exactly one caller; no guarded account is overdrawn; debits equal credits; every
account equals the replay of the journal; the hash chain verifies; and replaying all batches on
a fresh in-memory `Ledger` in the database's timestamp order, each with the `now` its worker
passed, gives every worker's results and the database's whole state.
"""

from __future__ import annotations

import itertools
import json
import multiprocessing
import random
import time
import traceback
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ledger import Account, AccountFlags, Ledger, Result, Transfer, TransferFlags
from specs import ledger as spec

from .crash_child import differences, violations
from .postgres_cluster import require_psycopg

require_psycopg()

from ledger.store.postgres import PostgresStore  # noqa: E402

Event = Account | Transfer

WORKERS = 8
BATCHES_PER_WORKER = 40
POOL = 600  # shared transfer ids 1..POOL; the kind of transfer is id % 10
CHAINS = 60  # shared linked chains; chain c uses ids CHAIN_BASE + 3c .. + 3c + 2
CHAIN_BASE = 10_000
MARKER_BASE = 10**9  # batch k of worker w has marker account MARKER_BASE + 1000 w + k
SEED = 20240611

GUARDED = tuple(range(1, 9))  # debits must not exceed credits
BANKS = (9, 10, 11)  # unguarded: fund the guarded accounts
HISTORY_ACCOUNT = 12  # plain, keeps a history
OPENING_FUNDS = 400
CLOCK_SPEED = 20  # the workers' `now` runs 20 times faster than real time: pending transfers
# with a timeout of 1 or 2 seconds expire during a run of a few seconds

DR_GUARD = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
PENDING, POST, VOID, LINKED = (
    int(TransferFlags.PENDING),
    int(TransferFlags.POST_PENDING),
    int(TransferFlags.VOID_PENDING),
    int(TransferFlags.LINKED),
)


def opening() -> list[list[Event]]:
    """The batches the parent applies before the workers start."""
    accounts: list[Event] = [Account(id=i, ledger=1, code=1, flags=DR_GUARD) for i in GUARDED]
    accounts += [Account(id=i, ledger=1, code=2) for i in BANKS]
    accounts.append(Account(id=HISTORY_ACCOUNT, ledger=1, code=3, flags=int(AccountFlags.HISTORY)))
    funding: list[Event] = [
        Transfer(
            id=MARKER_BASE - 100 + i,
            debit_account_id=BANKS[i % len(BANKS)],
            credit_account_id=i,
            amount=OPENING_FUNDS,
            ledger=1,
            code=1,
        )
        for i in GUARDED
    ]
    return [accounts, funding]


def shared_transfer(transfer_id: int) -> Transfer:
    """The body of a pool id: the same in every worker."""
    rng = random.Random(f"{SEED}:transfer:{transfer_id}")
    kind = transfer_id % 10
    if kind in (7, 8):  # post (7) or void (8) the pending transfer of kind 6 just before
        pending = shared_transfer(transfer_id - kind + 6)
        if kind == 8:
            return Transfer(id=transfer_id, pending_id=pending.id, flags=VOID)
        amount = rng.choice((pending.amount, pending.amount // 2 + 1))
        return Transfer(id=transfer_id, pending_id=pending.id, amount=amount, flags=POST)
    if kind in (4, 5):  # fund a guarded account (or the history account)
        debit = rng.choice(BANKS)
        credit = rng.choice((*GUARDED, HISTORY_ACCOUNT))
        amount = rng.randint(20, 150)
    else:  # spend from a guarded account: may overdraw it
        debit = rng.choice(GUARDED)
        credit = rng.choice((*BANKS, HISTORY_ACCOUNT))
        amount = rng.randint(10, 250)
    return Transfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        timeout=rng.choice((0, 1, 1, 2)) if kind == 6 else 0,
        ledger=1,
        code=1,
        user_data=transfer_id,
        flags=PENDING if kind == 6 else 0,
    )


def shared_chain(chain: int) -> list[Transfer]:
    """Three linked transfers; the middle one sometimes overdraws, failing the whole chain."""
    first = CHAIN_BASE + 3 * chain
    rng = random.Random(f"{SEED}:chain:{chain}")
    out = []
    for i in range(3):
        debit = rng.choice(GUARDED)
        out.append(
            Transfer(
                id=first + i,
                debit_account_id=debit,
                credit_account_id=rng.choice(BANKS),
                amount=rng.randint(5, 60) if i != 1 else rng.randint(5, 400),
                ledger=1,
                code=1,
                flags=LINKED if i < 2 else 0,
            )
        )
    return out


def worker_batches(worker: int) -> list[list[Event]]:
    rng = random.Random(f"{SEED}:worker:{worker}")
    batches = []
    for k in range(BATCHES_PER_WORKER):
        events: list[Event] = [
            Account(id=MARKER_BASE + 1000 * worker + k, ledger=1, code=9, user_data=worker)
        ]
        for _ in range(rng.randint(4, 30)):
            if rng.random() < 0.08:
                events += shared_chain(rng.randrange(CHAINS))
                continue
            transfer = shared_transfer(rng.randint(1, POOL))
            if rng.random() < 0.1:  # the same id with another body
                transfer = replace(transfer, user_data=transfer.user_data + 1)
            events.append(transfer)
        batches.append(events)
    return batches


def fast_now(base: int) -> int:
    return base + (time.time_ns() - base) * CLOCK_SPEED


def run_worker(url: str, worker: int, base: int, start: Any, out_path: str) -> None:
    """A worker process: apply its batches as fast as it can; write what it saw, or the
    exception that reached it, to `out_path`."""
    out: dict[str, Any]
    try:
        store = PostgresStore(url)
        batches = worker_batches(worker)
        rng = random.Random(worker)
        start.wait(120)
        records = []
        for k, events in enumerate(batches):
            now = fast_now(base)
            results = store.apply(events, now)
            records.append({"k": k, "now": now, "results": [int(r) for r in results]})
            time.sleep(rng.random() * 0.02)  # let the clock move on between batches
        store.close()
        out = {"records": records}
    except BaseException:
        out = {"error": traceback.format_exc()}
    Path(out_path).write_text(json.dumps(out))


@pytest.mark.slow
def test_eight_processes_give_a_serial_outcome(postgres_database: Any, tmp_path: Path) -> None:
    url = postgres_database()
    store = PostgresStore(url)
    base = time.time_ns()
    opening_batches = [(events, fast_now(base)) for events in opening()]
    opening_results = [store.apply(events, now) for events, now in opening_batches]
    assert all(r == Result.OK for results in opening_results for r in results)

    context = multiprocessing.get_context("spawn")
    start = context.Barrier(WORKERS)
    outputs = [tmp_path / f"worker-{w}.json" for w in range(WORKERS)]
    processes = [
        context.Process(target=run_worker, args=(url, w, base, start, str(outputs[w])))
        for w in range(WORKERS)
    ]
    for p in processes:
        p.start()
    try:
        for p in processes:
            p.join(180)
    finally:
        for p in processes:
            if p.is_alive():
                p.kill()
                p.join()
    assert [p.exitcode for p in processes] == [0] * WORKERS

    seen = [json.loads(path.read_text()) for path in outputs]
    errors = [out["error"] for out in seen if "error" in out]
    assert errors == [], "an exception reached a caller:\n" + "\n".join(errors)

    # Where the database put each batch: the timestamp of its marker account.
    submitted = {}
    for worker, out in enumerate(seen):
        batches = worker_batches(worker)
        for record in out["records"]:
            events = batches[record["k"]]
            submitted[events[0].id] = (worker, events, record["now"], record["results"])
    markers = {a.id: a.timestamp for a in store.lookup_accounts(sorted(submitted))}
    assert len(markers) == WORKERS * BATCHES_PER_WORKER  # every batch applied, once
    order = sorted(submitted, key=markers.__getitem__)
    switches = sum(1 for a, b in itertools.pairwise(order) if submitted[a][0] != submitted[b][0])
    assert switches >= 2 * WORKERS, f"the workers hardly overlapped ({switches} switches)"

    # The serial replay, in the database's order, with the nows the workers passed.
    ledger = Ledger()
    for (events, now), results in zip(opening_batches, opening_results, strict=True):
        assert ledger.apply(events, now) == results
    ok_by_id: Counter[int] = Counter()
    codes: Counter[Result] = Counter()
    for marker in order:
        worker, events, now, results = submitted[marker]
        replayed = ledger.apply(events, now)
        assert [int(r) for r in replayed] == results, f"batch {marker} of worker {worker}"
        for event, code in zip(events, replayed, strict=True):
            codes[code] += 1
            if type(event) is Transfer and code == Result.OK:
                ok_by_id[event.id] += 1
    # The run exercised the races it is about.
    assert codes[Result.EXISTS] and codes[Result.EXISTS_WITH_DIFFERENT_USER_DATA]
    assert codes[Result.EXCEEDS_CREDITS] and codes[Result.ID_ALREADY_FAILED]
    assert codes[Result.LINKED_EVENT_FAILED]
    assert (
        codes[Result.PENDING_TRANSFER_ALREADY_POSTED]
        or codes[Result.PENDING_TRANSFER_ALREADY_VOIDED]
    )
    assert ledger.expiries(), "no pending transfer expired during the run"

    # Every id once, reported OK to exactly one caller.
    journal = list(store.journal())
    accounts = [e for e in journal if type(e) is Account]
    transfers = [e for e in journal if type(e) is Transfer]
    stored_ids = Counter(t.id for t in transfers)
    assert max(stored_ids.values()) == 1
    worker_ids = {i for i in stored_ids if i < MARKER_BASE - 100}
    assert ok_by_id == Counter(dict.fromkeys(worker_ids, 1))

    # The invariants on the database's own state.
    guarded = [a for a in accounts if a.flags & DR_GUARD]
    assert len(guarded) == len(GUARDED)
    assert all(spec.account_within_limits(a) for a in accounts)
    assert all(a.debits_pending + a.debits_posted <= a.credits_posted for a in guarded)
    assert spec.ledgers_balance(accounts) == []
    expiries = [e for e in journal if type(e) is not Account and type(e) is not Transfer]
    assert spec.replay_mismatches(accounts, transfers, expiries) == []
    assert store.verify_chain().ok

    # The database's whole state is the serial replay's.
    account_ids = [a.id for a in ledger.accounts()]
    transfer_ids = [t.id for t in ledger.transfers()]
    assert differences(store, ledger, account_ids, transfer_ids) == []
    assert violations(store) == []
    store.close()
    print(
        f"\nPostgreSQL concurrency: {WORKERS} processes, {len(order)} batches, "
        f"{sum(codes.values())} events, {switches} switches between workers in the commit "
        f"order; OK {codes[Result.OK]}, EXISTS {codes[Result.EXISTS]}, EXCEEDS_CREDITS "
        f"{codes[Result.EXCEEDS_CREDITS]}, ID_ALREADY_FAILED {codes[Result.ID_ALREADY_FAILED]}, "
        f"{len(ledger.expiries())} expiries"
    )
