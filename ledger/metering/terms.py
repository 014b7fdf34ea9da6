"""The terms a decision runs under: one feature of the plan version and the price in force.

Compiled once per (plan, feature) and reused while both versions stay in force, so the hot path
of `decide` does no plan or price-book search."""

from __future__ import annotations

from dataclasses import dataclass, field

from ledger.metering.errors import InvalidRequestError
from ledger.metering.plans import FeaturePlan, Plan, WindowsLayer
from ledger.metering.registry import MemoryRegistry

FOREVER = 2**63 - 1


@dataclass(frozen=True, slots=True)
class WindowTerm:
    """A window of the feature: counted under `scope` ("*" when shared by several features)."""

    name: str
    scope: str
    length_ns: int
    limit: int
    weight: int

    @property
    def suffix(self) -> str:
        """The window's key is the customer's name followed by this."""
        return f"|{self.scope}|{self.name}"


@dataclass(frozen=True, slots=True)
class Terms:
    plan: Plan
    feature: str
    fp: FeaturePlan
    price_version: int
    price: int
    windows: tuple[WindowTerm, ...]
    valid_from: int
    valid_until: int
    window_keys: tuple[tuple[str, int, int, int], ...] = field(init=False, compare=False)
    """(key suffix, length ns, limit, weight) per window: `windows` as the windows-only path
    reads them, built once."""

    def __post_init__(self) -> None:
        keys = tuple((w.suffix, w.length_ns, w.limit, w.weight) for w in self.windows)
        object.__setattr__(self, "window_keys", keys)

    @property
    def windows_first(self) -> bool:
        return self.fp.layers[0].kind == "windows"


def compile_terms(registry: MemoryRegistry, plan_name: str, feature: str, now: int) -> Terms:
    """The terms in force at `now`; raises the error a caller can act on when there are none."""
    versions = registry.plans.get(plan_name, [])
    in_force = [p for p in versions if p.effective_from <= now]
    if not in_force:
        raise InvalidRequestError("now", f"plan {plan_name!r} is not in force at {now}")
    plan = in_force[-1]
    later = [p.effective_from for p in versions if p.effective_from > now]
    fp = registry.feature(plan, feature)
    price_version, price = registry.price_at(feature, now)
    later += [b.effective_from for b in registry.books if b.effective_from > now]
    book_from = max(b.effective_from for b in registry.books if b.effective_from <= now)
    windows = _windows(plan, feature, fp)
    return Terms(
        plan=plan,
        feature=feature,
        fp=fp,
        price_version=price_version,
        price=price,
        windows=windows,
        valid_from=max(plan.effective_from, book_from),
        valid_until=min(later, default=FOREVER),
    )


def locked_terms(plan: Plan, feature: str, price_version: int, price: int) -> Terms:
    """The terms a decision was made under (its price is locked), for its completion."""
    fp = plan.features[feature]
    windows = _windows(plan, feature, fp)
    return Terms(plan, feature, fp, price_version, price, windows, 0, FOREVER)


def _windows(plan: Plan, feature: str, fp: FeaturePlan) -> tuple[WindowTerm, ...]:
    layer = next((x for x in fp.layers if isinstance(x, WindowsLayer)), None)
    if layer is None:
        return ()
    own = [WindowTerm(w.name, feature, w.length_ns, w.limit, 1) for w in layer.windows]
    shared = [plan.shared(name) for name in layer.shared]
    return tuple(
        own + [WindowTerm(w.name, "*", w.length_ns, w.limit, w.weights[feature]) for w in shared]
    )
