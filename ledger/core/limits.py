"""Every bound the ledger enforces, in one place. Units are the last word of each name."""

from typing import Final

# Totals and amounts must fit a signed 64-bit column (SQLite INTEGER, PostgreSQL BIGINT).
INT64_MAX: Final = 2**63 - 1

AMOUNT_MAX: Final = INT64_MAX
"""Largest amount of one transfer, and of every account total, in minor units."""

ID_MAX: Final = INT64_MAX
"""Ids are 1..ID_MAX-1; 0 and ID_MAX are reserved (TigerBeetle reserves 0 and the maximum too)."""

LEDGER_MAX: Final = 2**32 - 1
CODE_MAX: Final = 2**16 - 1
USER_DATA_MAX: Final = INT64_MAX

TIMEOUT_MAX_SECONDS: Final = 2**32 - 1
TIMESTAMP_MAX_NS: Final = INT64_MAX
NS_PER_SECOND: Final = 1_000_000_000

BATCH_EVENTS_MAX: Final = 8190
