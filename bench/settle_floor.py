"""How fast plain Python and SQLite can report and settle bench/settle.py's events at all: a floor.

Prints one JSON object (shared BENCH conventions):
  settle.floor   usage events/s reported and settled by a bare loop doing only the essential
                 writes on bench/settle.py's database (the same preparation: 1,000 customers,
                 one decision holding credits per event, the same mix of actual units), with
                 the same batches (reports of 1,000, claims of 1,000), WAL, synchronous=FULL and
                 SqliteStore's page cache and checkpoint interval:
                 reporting inserts each usage event and its outbox entry; settling reads a claim
                 with each decision's reservation (json_extract in SQL), derives the usage,
                 monetization and transfer ids as the engine does (blake2b), inserts the
                 monetization event, the completion, the transfer posting the reservation and,
                 for an excess, a second transfer, each linked into the sha256 hash chain,
                 marks the reservation posted, writes one history row per transfer and each
                 touched account's totals, advances the chain's head and deletes the claim.

No validation, no key-reuse or digest check, no plan or price lookup, no invariant checks, no
write-off path, no JSON bodies beyond the completion's transfer list, no crash handling: what
`report_usage_batch` and `run_worker` do besides. It is not a usable settlement: it shows what
the 50,000 events/s target leaves for everything else on this machine (bench/RESULTS.md).

    python bench/settle_floor.py [--events 20000] [--runs 3] [--synchronous FULL|NORMAL|OFF]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from settle import CLAIM, CUSTOMERS, REPORT_BATCH, prepare

from ledger.metering.ids import derive_id
from ledger.store.sqlite import CACHE_KIB, CHECKPOINT_PAGES, SqliteStore

_TRANSFER = struct.Struct(">BqqqqqIIHqHq")  # the chain's canonical transfer bytes
POST_PENDING, POSTED = 4, 2  # TigerBeetle's flag and the reservation's status once posted
_CLAIM = f"""
    SELECT o.usage_id, u.customer, u.units, u.decision_id,
           json_extract(d.body, '$.price'), json_extract(d.body, '$.parts[0].transfer_id'),
           json_extract(d.body, '$.parts[0].amount'), json_extract(d.body, '$.parts[0].account_id')
    FROM outbox o JOIN usage_events u ON u.id = o.usage_id
    JOIN decisions d ON d.decision_id = u.decision_id
    ORDER BY o.usage_id LIMIT {CLAIM}"""


def report(db: sqlite3.Connection, reports: list[dict[str, Any]], now: int) -> None:
    usage, outbox = [], []
    for r in reports:
        customer, key, units, decision_id = r["customer"], r["key"], r["units"], r["decision_id"]
        usage_id = derive_id("usage", customer, key)
        usage.append(
            (usage_id, customer, key, r["feature"], units, r["occurred_at"], decision_id, now)
        )
        outbox.append((usage_id, derive_id("digest", units, decision_id)))
    with db:
        db.executemany("INSERT INTO usage_events VALUES (?, ?, ?, ?, ?, ?, ?, ?)", usage)
        db.executemany("INSERT INTO outbox VALUES (?, NULL, 0, 0, ?)", outbox)


def settle_claim(db: sqlite3.Connection, revenue: int, now: int) -> int:
    """Settle one claim; returns how many events it settled."""
    with db:
        rows = db.execute(_CLAIM).fetchall()
        (head,) = db.execute("SELECT head FROM clock WHERE id = 1").fetchone()
        money, completions, transfers, history = [], [], [], []
        posted: dict[int, int] = defaultdict(int)
        released: dict[int, int] = defaultdict(int)
        stamp = now
        for usage_id, customer, units, decision_id, price, pending, held, account in rows:
            amount = units * price
            money_id = derive_id("monetization", usage_id, "credits")
            money.append((money_id, usage_id, decision_id, customer, "credits", units, 1, price))
            money[-1] += (amount, account)
            released[account] += held
            moves = [(derive_id("post", usage_id), pending, min(amount, held))]
            if amount > held:
                moves.append((derive_id("excess", usage_id), 0, amount - held))
            for transfer_id, pending_id, value in moves:
                stamp += 1
                row = (transfer_id, account, revenue, value, pending_id, 0, 1, 1, money_id)
                row += (POST_PENDING if pending_id else 0, stamp)
                head = hashlib.sha256(head + _TRANSFER.pack(2, *row)).digest()
                transfers.append((*row, 0, None, head))
                posted[account] += value
                history.append((account, stamp, 0, posted[account], 0, 0))
            ids = json.dumps([m[0] for m in moves])
            completions.append((decision_id, usage_id, units, ids, ids, now))
        db.executemany(
            "INSERT INTO transfers VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", transfers
        )
        db.executemany(
            "UPDATE transfers SET status = ? WHERE id = ?", [(POSTED, r[5]) for r in rows]
        )
        db.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)", history)
        db.executemany(
            "UPDATE accounts SET debits_pending = debits_pending - ?,"
            " debits_posted = debits_posted + ? WHERE id = ?",
            [(released[account], value, account) for account, value in posted.items()],
        )
        db.execute(
            "UPDATE accounts SET credits_pending = credits_pending - ?,"
            " credits_posted = credits_posted + ? WHERE id = ?",
            (sum(released.values()), sum(posted.values()), revenue),
        )
        db.executemany(
            "INSERT INTO monetization_events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", money
        )
        db.executemany("INSERT INTO completions VALUES (?, ?, ?, ?, ?, ?)", completions)
        db.executemany("DELETE FROM outbox WHERE usage_id = ?", [(r[0],) for r in rows])
        db.execute("UPDATE clock SET head = ?, timestamp = ? WHERE id = 1", (head, stamp))
    return len(rows)


def run(events: int, directory: Path, run: int, synchronous: str = "FULL") -> float:
    path = directory / f"floor-{run}.db"
    with SqliteStore(path, synchronous="NORMAL") as setup:
        reports, _ = prepare(setup, events)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")  # as SqliteStore
    db.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_PAGES}")
    db.isolation_level = "DEFERRED"
    (revenue,) = db.execute("SELECT credit_account_id FROM transfers LIMIT 1").fetchone()
    started = time.perf_counter()
    for start in range(0, len(reports), REPORT_BATCH):
        report(db, reports[start : start + REPORT_BATCH], time.time_ns())
    settled = 0
    while settled < events:
        done = settle_claim(db, revenue, time.time_ns())
        assert done, "the outbox ran dry early"
        settled += done
    rate = events / (time.perf_counter() - started)
    _check(db, events)
    db.close()
    return rate


def _check(db: sqlite3.Connection, events: int) -> None:
    """The floor did the work it claims: every event settled once, every reservation posted."""
    one = db.execute
    assert one("SELECT count(*) FROM outbox").fetchone() == (0,)
    assert one("SELECT count(*) FROM monetization_events").fetchone() == (events,)
    assert one("SELECT count(*) FROM completions").fetchone() == (events,)
    assert one("SELECT count(*) FROM transfers WHERE status = 1").fetchone() == (0,)
    charged = one("SELECT sum(amount) FROM monetization_events").fetchone()
    moved = "SELECT sum(t.amount) FROM transfers t JOIN monetization_events m ON t.user_data = m.id"
    assert one(moved).fetchone() == charged, "the transfers naming the charges move their sum"
    assert one("SELECT count(*) FROM accounts WHERE debits_pending > 0").fetchone() == (0,)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--synchronous",
        choices=("FULL", "NORMAL", "OFF"),
        default="FULL",
        help="FULL as bench/settle.py; OFF shows what is left without waiting for the disk",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rates = [run(args.events, Path(tmp), n, args.synchronous) for n in range(args.runs)]
    figure = {
        "name": "settle.floor",
        "value": round(statistics.median(rates)),
        "unit": "events/s",
        "params": {
            "events": args.events,
            "customers": CUSTOMERS,
            "report_batch": REPORT_BATCH,
            "claim": CLAIM,
            "synchronous": args.synchronous,
            "runs_values": [round(r) for r in rates],
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "what": "a bare loop doing only the essential writes of reporting and settling "
            "(see the script's docstring); not a usable settlement",
        },
    }
    print(json.dumps(figure))


if __name__ == "__main__":
    main()
