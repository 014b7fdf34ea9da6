"""Plans and price books: what a customer may use, in which order, and at what price.

Plans are data (TOML or JSON) validated strictly by pydantic: an unknown field or layer kind, a
duplicate layer or window, a float where an integer belongs, each fails naming the field.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ledger.core.limits import AMOUNT_MAX, NS_PER_SECOND
from ledger.metering.errors import PlanError

M = TypeVar("M", bound=BaseModel)
_STRICT = ConfigDict(strict=True, extra="forbid", frozen=True)
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^([1-9][0-9]{0,9})([smhdw])$")
Positive = Annotated[int, Field(ge=1, le=AMOUNT_MAX)]
Name = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")]


DURATION_MAX = 2**32 - 1  # seconds (136 years): what a reservation timeout may be


def parse_duration(value: object) -> int:
    """Seconds from an integer or a string such as "5h", "7d", "30m", "45s", "2w", from 1 to
    DURATION_MAX."""
    if isinstance(value, bool):
        raise ValueError("a duration is an integer of seconds or a string like '5h'")
    seconds = None
    if isinstance(value, int):
        seconds = value
    elif isinstance(value, str) and (m := _DURATION.match(value)):
        seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds is not None:
        if not 1 <= seconds <= DURATION_MAX:
            raise ValueError(f"a duration must be 1 to {DURATION_MAX} seconds, not {seconds}")
        return seconds
    raise ValueError("a duration is an integer of seconds or a string like '5h', '7d', '30m'")


class Window(BaseModel):
    """A rolling window: at most `limit` units in any `length` seconds."""

    model_config = _STRICT
    name: Name
    length: int
    limit: Positive

    _length = field_validator("length", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @property
    def length_ns(self) -> int:
        return self.length * NS_PER_SECOND


class SharedWindow(Window):
    """A window shared by several features; each unit of a feature counts `weights[feature]`."""

    weights: dict[Name, Positive]


class WindowsLayer(BaseModel):
    model_config = _STRICT
    kind: Literal["windows"]
    windows: list[Window] = []
    shared: list[Name] = []

    @model_validator(mode="after")
    def _some_window(self) -> WindowsLayer:
        names = [w.name for w in self.windows] + list(self.shared)
        if not names:
            raise ValueError("a windows layer needs at least one window")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate window name in {names}")
        return self


class AllowanceLayer(BaseModel):
    """`amount` units per calendar period (UTC), reset at the period's start; no proration."""

    model_config = _STRICT
    kind: Literal["allowance"]
    amount: Positive
    period: Literal["day", "week", "month"]


class GrantsLayer(BaseModel):
    """The customer's promotional grants, soonest-expiring first."""

    model_config = _STRICT
    kind: Literal["grants"]


class CreditsLayer(BaseModel):
    """The customer's purchased credits."""

    model_config = _STRICT
    kind: Literal["credits"]


class PoolLayer(BaseModel):
    """The organisation's shared pool, then its overage account up to its cap."""

    model_config = _STRICT
    kind: Literal["pool"]


Layer = Annotated[
    WindowsLayer | AllowanceLayer | GrantsLayer | CreditsLayer | PoolLayer,
    Field(discriminator="kind"),
]
LayerKind = Literal["windows", "allowance", "grants", "credits", "pool"]
MONEY_KINDS: frozenset[str] = frozenset({"grants", "credits", "pool"})


class FeaturePlan(BaseModel):
    model_config = _STRICT
    layers: list[Layer] = Field(min_length=1)
    reservation_timeout: int = 3600

    _timeout = field_validator("reservation_timeout", mode="before")(
        classmethod(lambda cls, v: parse_duration(v))
    )

    @field_validator("layers")
    @classmethod
    def _each_kind_once(cls, layers: list[Layer]) -> list[Layer]:
        kinds = [layer.kind for layer in layers]
        for kind in kinds:
            if kinds.count(kind) > 1:
                raise ValueError(f"layer kind {kind!r} appears more than once")
        return layers

    @property
    def uses_money(self) -> bool:
        return any(layer.kind in MONEY_KINDS for layer in self.layers)


class Plan(BaseModel):
    """A versioned plan: per feature, the ordered layers of the waterfall. A version is in force
    from `effective_from` (ns) until a later version takes over."""

    model_config = _STRICT
    plan: Name
    version: Positive
    effective_from: Annotated[int, Field(ge=0, le=AMOUNT_MAX)] = 0
    features: dict[Name, FeaturePlan] = Field(min_length=1)
    shared_windows: list[SharedWindow] = []

    @model_validator(mode="after")
    def _shared_windows_resolve(self) -> Plan:
        declared = {w.name: w for w in self.shared_windows}
        if len(declared) != len(self.shared_windows):
            raise ValueError("shared_windows: duplicate window name")
        for feature, fp in self.features.items():
            for layer in fp.layers:
                for name in layer.shared if isinstance(layer, WindowsLayer) else ():
                    if name not in declared:
                        raise ValueError(f"features.{feature}: unknown shared window {name!r}")
                    if feature not in declared[name].weights:
                        raise ValueError(
                            f"shared_windows.{name}.weights: no weight for feature {feature!r}"
                        )
        return self

    def shared(self, name: str) -> SharedWindow:
        return next(w for w in self.shared_windows if w.name == name)


class PriceBook(BaseModel):
    """Integer micro-credits per unit for each feature, in force from `effective_from` (ns)."""

    model_config = _STRICT
    version: Positive
    effective_from: Annotated[int, Field(ge=0, le=AMOUNT_MAX)]
    prices: dict[Name, Positive] = Field(min_length=1)


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise PlanError(f"{path}: cannot read ({e.strerror})") from e
    try:
        if path.suffix == ".json":
            return json.loads(text)
        return tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise PlanError(f"{path}: not valid {path.suffix.lstrip('.') or 'TOML'}: {e}") from e


def _validated(model: type[M], data: Any, source: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise PlanError(f"{source}: {where}: {first['msg']}") from e


def plan_from_data(data: Any, source: str = "plan") -> Plan:
    return _validated(Plan, data, source)


def price_book_from_data(data: Any, source: str = "price book") -> PriceBook:
    return _validated(PriceBook, data, source)


def load_plan(path: str | Path) -> Plan:
    """A plan from a .toml or .json file; `PlanError` names the file and the field."""
    p = Path(path)
    return plan_from_data(_read(p), str(p))


def load_price_book(path: str | Path) -> PriceBook:
    p = Path(path)
    return price_book_from_data(_read(p), str(p))
