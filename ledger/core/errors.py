"""Exceptions for input the ledger refuses as a whole. Outcomes of valid events are result codes
(`Result`), never exceptions; an exception means nothing of the batch was applied."""


class LedgerError(Exception):
    """Root of every error Tollgate raises on purpose."""


class InvalidEventError(LedgerError):
    """An event is malformed (wrong type, negative or oversized field); the batch was refused."""

    def __init__(self, index: int, field: str, problem: str) -> None:
        self.index = index
        self.field = field
        self.problem = problem
        super().__init__(
            f"event {index}: field {field!r} {problem}; nothing in this batch was applied"
        )


class BatchTooLargeError(LedgerError):
    """A batch holds more events than BATCH_EVENTS_MAX."""


class InvalidTimeError(LedgerError):
    """`now` is not a non-negative integer of nanoseconds that leaves room for the batch."""
