"""The transfers every store benchmark applies, so that SQLite and PostgreSQL figures compare."""

from __future__ import annotations

import random

from ledger import Transfer

BATCH = 8190


def transfers(count: int, accounts: int, first_id: int, rng: random.Random) -> list[Transfer]:
    out = []
    for i in range(count):
        debit = rng.randint(1, accounts)
        credit = rng.randint(1, accounts - 1)
        credit += credit >= debit
        out.append(
            Transfer(
                id=first_id + i,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=rng.randint(1, 10_000),
                ledger=1,
                code=1,
            )
        )
    return out
