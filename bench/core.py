"""In-memory `Ledger.apply` throughput (bench/RESULTS.md records the figures).

Prints one JSON object per figure on stdout (see shared BENCH conventions):
  core.apply.simple  batches of 8,190 single-phase transfers between random accounts
  core.apply.mixed   the same with 20% two-phase events (10% pending, 5% post, 5% void)
Each figure is the median of --runs timed runs after one warm-up run, on one core.
The peer of core.apply.simple is a bare dict loop moving the same amounts (no checks at all).

    python bench/core.py [--batches 60] [--runs 3] [--accounts 10000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable

from ledger import Account, Ledger, Result, Transfer, TransferFlags

BATCH = 8190


def _accounts(count: int) -> list[Account]:
    return [Account(id=i, ledger=1, code=1) for i in range(1, count + 1)]


def simple_batches(batches: int, accounts: int, seed: int) -> list[list[Transfer]]:
    rng = random.Random(seed)
    out, next_id = [], 1
    for _ in range(batches):
        batch = []
        for _ in range(BATCH):
            debit = rng.randint(1, accounts)
            credit = rng.randint(1, accounts - 1)
            credit += credit >= debit
            batch.append(
                Transfer(
                    id=next_id,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=rng.randint(1, 10_000),
                    ledger=1,
                    code=1,
                )
            )
            next_id += 1
        out.append(batch)
    return out


def mixed_batches(batches: int, accounts: int, seed: int) -> list[list[Transfer]]:
    """Per batch: 80% single-phase, 10% pending, 5% posts and 5% voids of the previous batch's
    pending transfers (so every post and void finds a live pending transfer)."""
    rng = random.Random(seed)
    out, next_id, open_pending = [], 1, []
    for _ in range(batches):
        batch, new_pending = [], []
        for i in range(BATCH):
            debit = rng.randint(1, accounts)
            credit = rng.randint(1, accounts - 1)
            credit += credit >= debit
            slot = i % 20
            if slot in (0, 1):
                t = Transfer(
                    id=next_id,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=1000,
                    ledger=1,
                    code=1,
                    flags=TransferFlags.PENDING,
                )
                new_pending.append(next_id)
            elif slot == 2 and open_pending:
                t = Transfer(
                    id=next_id,
                    pending_id=open_pending.pop(),
                    amount=600,
                    flags=TransferFlags.POST_PENDING,
                )
            elif slot == 3 and open_pending:
                t = Transfer(
                    id=next_id, pending_id=open_pending.pop(), flags=TransferFlags.VOID_PENDING
                )
            else:
                t = Transfer(
                    id=next_id,
                    debit_account_id=debit,
                    credit_account_id=credit,
                    amount=rng.randint(1, 10_000),
                    ledger=1,
                    code=1,
                )
            batch.append(t)
            next_id += 1
        open_pending = new_pending
        out.append(batch)
    return out


def time_ledger(batches: list[list[Transfer]], accounts: int) -> float:
    ledger = Ledger()
    all_accounts = _accounts(accounts)
    for start in range(0, accounts, BATCH):
        ledger.apply(all_accounts[start : start + BATCH], 1)
    started = time.perf_counter()
    for i, batch in enumerate(batches):
        results = ledger.apply(batch, 10 + i)
        if any(r is not Result.OK for r in results):
            sys.exit(f"benchmark batch {i} was not fully accepted: {set(results)}")
    return sum(map(len, batches)) / (time.perf_counter() - started)


def time_dict_loop(batches: list[list[Transfer]], accounts: int) -> float:
    debits = dict.fromkeys(range(1, accounts + 1), 0)
    credits = dict(debits)
    started = time.perf_counter()
    for batch in batches:
        for t in batch:
            debits[t.debit_account_id] += t.amount
            credits[t.credit_account_id] += t.amount
    return sum(map(len, batches)) / (time.perf_counter() - started)


def median_rate(measure: Callable[[], float], runs: int) -> float:
    measure()  # warm-up
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--accounts", type=int, default=10_000)
    args = parser.parse_args()
    params = {"batch": BATCH, "batches": args.batches, "accounts": args.accounts, "runs": args.runs}
    transfers = args.batches * BATCH

    simple = simple_batches(args.batches, args.accounts, seed=1)
    rates, peers = [], []
    time_ledger(simple, args.accounts)
    time_dict_loop(simple, args.accounts)
    for _ in range(args.runs):  # alternate A B A B: both see the same machine load
        rates.append(time_ledger(simple, args.accounts))
        peers.append(time_dict_loop(simple, args.accounts))
    value, peer = statistics.median(rates), statistics.median(peers)
    print(
        json.dumps(
            {
                "name": "core.apply.simple",
                "value": round(value),
                "unit": "transfers/s",
                "params": {**params, "transfers": transfers},
                "peer": "bare dict loop",
                "peer_value": round(peer),
                "ratio": round(value / peer, 3),
            }
        )
    )

    mixed = mixed_batches(args.batches, args.accounts, seed=2)
    value = median_rate(lambda: time_ledger(mixed, args.accounts), args.runs)
    print(
        json.dumps(
            {
                "name": "core.apply.mixed",
                "value": round(value),
                "unit": "transfers/s",
                "params": {**params, "transfers": transfers, "two_phase_share": 0.2},
            }
        )
    )


if __name__ == "__main__":
    main()
