"""The ledger accounts behind the money layers, and the platform's own accounts.

All money is micro-credits on ledger `LEDGER`. A customer's funds (credits, each grant) and an
organisation's pool and overage room are accounts with `debits_must_not_exceed_credits`, so the
ledger itself refuses to take more than they hold (L1, M4). The overage account is credited with
its cap up front from the overage facility, so the cap is enforced the same way.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

from ledger.core.flags import AccountFlags
from ledger.core.types import Account
from ledger.metering.ids import derive_id

LEDGER: Final = 1


class Code(IntEnum):
    """Account codes (stable: stored)."""

    CREDITS = 1
    GRANT = 2
    POOL = 3
    OVERAGE = 4
    REVENUE = 10
    WRITE_OFF = 11
    BREAKAGE = 12
    SALES = 13
    PROMOTIONS = 14
    OVERAGE_FACILITY = 15


FUNDS: Final = int(AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS | AccountFlags.HISTORY)


def platform_account(code: Code) -> int:
    return derive_id("platform", code.name)


def customer_account(customer: str) -> int:
    return derive_id("credits", customer)


def grant_account(customer: str, grant: str) -> int:
    return derive_id("grant", customer, grant)


def pool_account(org: str) -> int:
    return derive_id("pool", org)


def overage_account(org: str) -> int:
    return derive_id("overage", org)


def platform_accounts() -> list[Account]:
    """The platform's accounts: sources of issued money and sinks of charges, no balance rule."""
    sinks_and_sources = (
        Code.REVENUE,
        Code.WRITE_OFF,
        Code.BREAKAGE,
        Code.SALES,
        Code.PROMOTIONS,
        Code.OVERAGE_FACILITY,
    )
    return [Account(id=platform_account(c), ledger=LEDGER, code=int(c)) for c in sinks_and_sources]


def funds_account(account_id: int, code: Code, owner: int) -> Account:
    return Account(id=account_id, ledger=LEDGER, code=int(code), flags=FUNDS, user_data=owner)


class TransferCode(IntEnum):
    """Transfer codes (stable: stored). Posts and voids carry their hold's code."""

    HOLD = 1
    CHARGE = 2
    WRITE_OFF = 3
    PURCHASE = 4
    GRANT = 5
    POOL_TOP_UP = 6
    OVERAGE_CAP = 7
    BREAKAGE = 8
