"""A meter's memory windows started again from what its tables recorded.

Rate windows and allowances live in the window store, not in the database. A meter that keeps
them in its own memory would forget, when its process restarts, everything taken before: every
customer would find a full allowance and empty windows. So such a meter rebuilds them when it
opens. Each allowed decision still counted takes its window and allowance units again, as its
plan version counted them at its time; each settlement gives back what its completion did not
use and takes its excess again at the time it was settled. The result is the state the windows
had when the process stopped.

Only what can still count is read: decisions and settlements within the longest window or
allowance period of any plan, back from the latest decision (nothing when no plan has a window
or an allowance).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.core.limits import NS_PER_SECOND
from ledger.metering.completion import kept_units
from ledger.metering.decision import Completion, Decision
from ledger.metering.plans import AllowanceLayer, Plan, WindowsLayer
from ledger.metering.windows import MemoryWindows

if TYPE_CHECKING:
    from ledger.metering.meter import Meter

FREE = ("windows", "allowance")
LONGEST_PERIOD_NS = 31 * 86400 * NS_PER_SECOND  # a month, the longest allowance period


def horizon(plans: list[Plan]) -> int:
    """How long (ns) anything these plans take can still count: their longest window, or a
    month when one has an allowance."""
    longest = 0
    for plan in plans:
        longest = max([longest, *(w.length_ns for w in plan.shared_windows)])
        for fp in plan.features.values():
            for layer in fp.layers:
                if isinstance(layer, WindowsLayer):
                    longest = max([longest, *(w.length_ns for w in layer.windows)])
                elif isinstance(layer, AllowanceLayer):
                    longest = max(longest, LONGEST_PERIOD_NS)
    return longest


def restore_windows(meter: Meter) -> int:
    """Take again into the meter's own memory windows what the recorded decisions and
    settlements left taken; returns how many decisions were read."""
    windows = meter.windows
    assert isinstance(windows, MemoryWindows), "Redis windows outlive the process"
    plans = [p for versions in meter.registry.plans.values() for p in versions]
    longest = horizon(plans)
    if not longest:  # no plan counts anything in windows or allowances: nothing to read
        return 0
    history = meter.tables.read(meter.store, lambda cur: meter.tables.window_history(cur, longest))
    for decision, completion in history:
        _restore_one(meter, windows, decision, completion)
    return len(history)


def _restore_one(meter: Meter, windows: MemoryWindows, d: Decision, c: Completion | None) -> None:
    token = str(d.decision_id)
    decided = {p.layer: p.units for p in d.parts if p.layer in FREE}
    if decided:
        windows.restore(token, meter.free_takes(d, d.now, decided), d.now)
    if c is None:
        return
    # Settled before the time was kept: the decision's time is the best known.
    at = c.settled_at or d.now
    kept = {
        p.layer: keep
        for p, keep in zip(d.parts, kept_units(d.parts, c.actual_units), strict=True)
        if p.layer in FREE
    }
    meter.keep_free(d, kept, at)
    charged = {x.layer: x.units for x in c.charges if x.layer in FREE}
    excess = {layer: units - kept.get(layer, 0) for layer, units in charged.items()}
    assert min(excess.values(), default=0) >= 0  # what a part kept is charged, excess beside
    if any(excess.values()):
        windows.restore(f"{token}:excess", meter.free_takes(d, at, excess), at)
