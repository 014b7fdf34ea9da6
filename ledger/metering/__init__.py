"""The access engine: plans, rate windows, the decision waterfall, completion and settlement.

Example (times are integer nanoseconds; money is integer micro-credits):

>>> meter = Meter(store)  # any ledger Store; MemoryWindows unless given RedisWindows
>>> meter.publish_plan(load_plan("plan.toml"))
>>> meter.publish_prices(load_price_book("prices.toml"))
>>> meter.add_customer("alice", "pro", now)
>>> decision = meter.decide("alice", "codex.task", 120, "req-1", now)
>>> completion = meter.complete(decision.decision_id, 97, later)
"""

from ledger.metering.decision import Charge, Completion, Consulted, Decision, Part, Reason, Unblock
from ledger.metering.errors import (
    CompletionConflictError,
    GrantConflictError,
    IdempotencyConflictError,
    InvalidRequestError,
    MeteringError,
    NoPriceError,
    PlanError,
    UnknownCustomerError,
    UnknownDecisionError,
    UnknownFeatureError,
)
from ledger.metering.meter import UNITS_MAX, ConcurrentChangeError, DecideRequest, Meter
from ledger.metering.plans import (
    Plan,
    PriceBook,
    load_plan,
    load_price_book,
    plan_from_data,
    price_book_from_data,
)
from ledger.metering.windows import MemoryWindows, WindowStore, WindowTake

__all__ = [
    "UNITS_MAX",
    "Charge",
    "Completion",
    "CompletionConflictError",
    "ConcurrentChangeError",
    "Consulted",
    "DecideRequest",
    "Decision",
    "GrantConflictError",
    "IdempotencyConflictError",
    "InvalidRequestError",
    "MemoryWindows",
    "Meter",
    "MeteringError",
    "NoPriceError",
    "Part",
    "Plan",
    "PlanError",
    "PriceBook",
    "Reason",
    "Unblock",
    "UnknownCustomerError",
    "UnknownDecisionError",
    "UnknownFeatureError",
    "WindowStore",
    "WindowTake",
    "load_plan",
    "load_price_book",
    "plan_from_data",
    "price_book_from_data",
]
