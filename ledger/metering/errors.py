"""Errors of the access engine. Each says what was wrong and what to do; none consumes anything."""

from __future__ import annotations

from ledger.core.errors import LedgerError


class MeteringError(LedgerError):
    """Root of the access engine's errors: the request was refused whole, nothing consumed."""


class PlanError(MeteringError):
    """A plan or price book is malformed; the message names the field."""


class UnknownCustomerError(MeteringError):
    """The customer has not been registered (add it with a plan first)."""


class UnknownFeatureError(MeteringError):
    """The customer's plan has no such feature."""


class NoPriceError(MeteringError):
    """No price is in force for the feature at that time; publish a price book first."""


class InvalidRequestError(MeteringError):
    """A field of the request is out of range; `field` names it."""

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"{field}: {problem}; nothing was consumed")


class IdempotencyConflictError(MeteringError):
    """The idempotency key was used before with different parameters; `field` names the first."""

    def __init__(self, key: str, field: str, before: object, now: object) -> None:
        self.field = field
        super().__init__(
            f"idempotency key {key!r} was used with {field}={before!r}, not {now!r}; "
            "use a new key for a different request"
        )


class GrantConflictError(MeteringError):
    """The grant id exists with other terms; nothing was changed. Use a new grant id."""


class UnknownDecisionError(MeteringError):
    """No decision has that id (or it was a refusal, which cannot be completed)."""


class CompletionConflictError(MeteringError):
    """The decision was already completed with a different actual amount; nothing changed."""


class UsageChangedError(MeteringError):
    """A queued usage event's row no longer matches what was reported (its outbox entry keeps
    the report's digest): the row was changed behind Tollgate's back. Nothing in the batch was
    settled."""

    def __init__(self, usage_id: int) -> None:
        self.usage_id = usage_id
        super().__init__(
            f"usage {usage_id} was changed after it was reported (its row no longer matches the "
            "digest its outbox entry keeps); nothing in this batch was settled. `tollgate audit` "
            "names it: restore the row as reported, then settle again"
        )
