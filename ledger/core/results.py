"""Result codes: one per event. Declaration order is precedence; the numbers are stable and
are stored and sent on the wire, so a new code gets a new number and old numbers never move."""

from enum import IntEnum, unique


@unique
class Result(IntEnum):
    OK = 0
    # Batch level.
    LINKED_EVENT_FAILED = 1
    LINKED_EVENT_CHAIN_OPEN = 2
    # Shape of the event.
    TIMESTAMP_MUST_BE_ZERO = 3
    RESERVED_FLAG = 4
    ID_MUST_NOT_BE_ZERO = 5
    ID_MUST_NOT_BE_INT_MAX = 6
    # Idempotency: the id exists already (first differing field wins).
    EXISTS_WITH_DIFFERENT_FLAGS = 7
    EXISTS_WITH_DIFFERENT_PENDING_ID = 8
    EXISTS_WITH_DIFFERENT_TIMEOUT = 9
    EXISTS_WITH_DIFFERENT_DEBIT_ACCOUNT_ID = 10
    EXISTS_WITH_DIFFERENT_CREDIT_ACCOUNT_ID = 11
    EXISTS_WITH_DIFFERENT_AMOUNT = 12
    EXISTS_WITH_DIFFERENT_USER_DATA = 13
    EXISTS_WITH_DIFFERENT_LEDGER = 14
    EXISTS_WITH_DIFFERENT_CODE = 15
    EXISTS = 16
    ID_ALREADY_FAILED = 17
    # Validation of fields.
    FLAGS_ARE_MUTUALLY_EXCLUSIVE = 18
    DEBITS_PENDING_MUST_BE_ZERO = 19
    DEBITS_POSTED_MUST_BE_ZERO = 20
    CREDITS_PENDING_MUST_BE_ZERO = 21
    CREDITS_POSTED_MUST_BE_ZERO = 22
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 23
    DEBIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 24
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_ZERO = 25
    CREDIT_ACCOUNT_ID_MUST_NOT_BE_INT_MAX = 26
    ACCOUNTS_MUST_BE_DIFFERENT = 27
    PENDING_ID_MUST_BE_ZERO = 28
    PENDING_ID_MUST_NOT_BE_ZERO = 29
    PENDING_ID_MUST_NOT_BE_INT_MAX = 30
    PENDING_ID_MUST_BE_DIFFERENT = 31
    TIMEOUT_RESERVED_FOR_PENDING_TRANSFER = 32
    AMOUNT_MUST_NOT_BE_ZERO = 33
    LEDGER_MUST_NOT_BE_ZERO = 34
    CODE_MUST_NOT_BE_ZERO = 35
    # Two-phase: the pending transfer named by pending_id.
    PENDING_TRANSFER_NOT_FOUND = 36
    PENDING_TRANSFER_NOT_PENDING = 37
    PENDING_TRANSFER_HAS_DIFFERENT_DEBIT_ACCOUNT_ID = 38
    PENDING_TRANSFER_HAS_DIFFERENT_CREDIT_ACCOUNT_ID = 39
    PENDING_TRANSFER_HAS_DIFFERENT_LEDGER = 40
    PENDING_TRANSFER_HAS_DIFFERENT_CODE = 41
    EXCEEDS_PENDING_TRANSFER_AMOUNT = 42
    PENDING_TRANSFER_HAS_DIFFERENT_AMOUNT = 43
    PENDING_TRANSFER_ALREADY_POSTED = 44
    PENDING_TRANSFER_ALREADY_VOIDED = 45
    PENDING_TRANSFER_EXPIRED = 46
    # The accounts.
    DEBIT_ACCOUNT_NOT_FOUND = 47
    CREDIT_ACCOUNT_NOT_FOUND = 48
    ACCOUNTS_MUST_HAVE_THE_SAME_LEDGER = 49
    TRANSFER_MUST_HAVE_THE_SAME_LEDGER_AS_ACCOUNTS = 50
    DEBIT_ACCOUNT_ALREADY_CLOSED = 51
    CREDIT_ACCOUNT_ALREADY_CLOSED = 52
    # Bounds: an overflow is a result, never a wrap.
    OVERFLOWS_DEBITS_PENDING = 53
    OVERFLOWS_CREDITS_PENDING = 54
    OVERFLOWS_DEBITS_POSTED = 55
    OVERFLOWS_CREDITS_POSTED = 56
    OVERFLOWS_DEBITS = 57
    OVERFLOWS_CREDITS = 58
    OVERFLOWS_TIMEOUT = 59
    # Balance limits.
    EXCEEDS_CREDITS = 60
    EXCEEDS_DEBITS = 61

    @property
    def transient(self) -> bool:
        """A transient failure depends on the state, not on the event alone; it is remembered
        under the event's id so that a retry can never turn into a charge later."""
        return self in TRANSIENT_RESULTS


TRANSIENT_RESULTS = frozenset(
    {
        Result.DEBIT_ACCOUNT_NOT_FOUND,
        Result.CREDIT_ACCOUNT_NOT_FOUND,
        Result.PENDING_TRANSFER_NOT_FOUND,
        Result.EXCEEDS_CREDITS,
        Result.EXCEEDS_DEBITS,
        Result.DEBIT_ACCOUNT_ALREADY_CLOSED,
        Result.CREDIT_ACCOUNT_ALREADY_CLOSED,
    }
)

# Results that leave the ledger as it was and tell the caller the id is known.
EXISTS_RESULTS = frozenset({r for r in Result if r.name.startswith("EXISTS")})
