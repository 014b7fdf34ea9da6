"""The demo: a Codex/Sora-like week of use, metered on the embedded SQLite store.

Two halves, as everywhere in Tollgate. `workload(config)` is pure and seeded: from the seed it
draws the users (a usage profile, an organisation or none, whether they buy credits when they hit
the wall, how long they are willing to wait), the organisations and every request (when, which
feature, the estimated and the actual units, how long it runs, whether its usage is completed in
place or reported for the settlement worker). `run(meter, work)` then drives a `Meter` through
that workload on a simulated clock of integer nanoseconds: no wall clock enters the timeline, so
the same seed gives the same summary, to the micro-credit.

What it exercises: `decide` on every request; `complete` for coding tasks and `report_usage` plus
the settlement worker for videos; purchases when a user hits the wall (the amount comes from the
refusal's `unblock`); waiting for `retry_after`; a welcome grant that expires mid-run
(`expire_grants` moves its remainder to breakage) and a later promotion; organisation pools, one
with an overage cap; tasks that overshoot their estimate (charged from what is left, the rest
written off); and tasks that outlive their reservation.

Money is integer micro-credits throughout; `random.Random` draws only integers.
"""

from __future__ import annotations

import heapq
import json
import random
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from ledger.metering import Completion, Decision, Meter, plan_from_data, price_book_from_data
from ledger.store.sqlite import APPLICATION_ID, SqliteStore

NS = 10**9
MINUTE = 60 * NS
HOUR = 3600 * NS
DAY = 24 * HOUR
CREDIT = 10**6  # micro-credits in one credit
START = 1_740_960_000 * NS  # Monday 2025-03-03 00:00 UTC

DEFAULT_USERS = 200
DEFAULT_HOURS = 168
DEFAULT_SEED = 1
USERS_MAX = 5_000
HOURS_MAX = 24 * 7 * 5
ATTEMPTS_MAX = 4

PLAN = "codex-sora-pro"
CODEX = "codex.task"  # units: cost-weighted task units
SORA = "sora.video"  # units: seconds of video
PRICES = {CODEX: 10_000, SORA: 100_000}  # micro-credits per unit
WELCOME_GRANT = 5 * CREDIT
PROMO_GRANT = 5 * CREDIT
PACK = 10 * CREDIT  # purchases at the wall are rounded up to whole packs
POOL_PER_MEMBER = 10 * CREDIT
OVERAGE_PER_MEMBER = 3 * CREDIT
SETTLE_EVERY = 5 * MINUTE
WORKER = "demo-settlement"
MARKER_KIND = "demo"

LAYERS = ("windows", "allowance", "grants", "credits", "pool", "write_off")
MONEY_LAYERS = ("grants", "credits", "pool")
ORG_NAMES = ("acme", "globex", "initech")


class DemoError(Exception):
    """The demo cannot start as asked; the message says what to do instead."""


def plan_data() -> dict[str, Any]:
    """The demo's plan: per feature a 5-hour and a weekly window, then (videos only) a daily
    allowance, then promotional grants, purchased credits and the organisation's pool."""

    def windows(five_hours: int, weekly: int) -> dict[str, Any]:
        return {
            "kind": "windows",
            "windows": [
                {"name": "5h", "length": "5h", "limit": five_hours},
                {"name": "weekly", "length": "7d", "limit": weekly},
            ],
        }

    money = [{"kind": "grants"}, {"kind": "credits"}, {"kind": "pool"}]
    allowance = {"kind": "allowance", "amount": 20, "period": "day"}
    return {
        "plan": PLAN,
        "version": 1,
        "effective_from": 0,
        "features": {
            CODEX: {"layers": [windows(400, 2000), *money], "reservation_timeout": "1h"},
            SORA: {"layers": [windows(60, 240), allowance, *money], "reservation_timeout": "1h"},
        },
    }


# -- the workload (pure) ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoConfig:
    """Attributes: users, hours (simulated), seed, start (ns; a Monday 00:00 UTC)."""

    users: int = DEFAULT_USERS
    hours: int = DEFAULT_HOURS
    seed: int = DEFAULT_SEED
    start: int = START

    @property
    def end(self) -> int:
        return self.start + self.hours * HOUR


class Profile(NamedTuple):
    """How a kind of user works: `slots` chances a day to start a session (each taken with
    `session_percent`), `burst` requests per session `gap_minutes` apart; whether they buy at
    the wall (`buyer_percent`), the longest `retry_after` they wait, credits bought up front."""

    name: str
    share_percent: int
    slots: int
    session_percent: int
    burst: tuple[int, int]
    gap_minutes: tuple[int, int]
    buyer_percent: int
    wait_hours: int
    start_credits: int


PROFILES = (
    Profile("light", 40, 1, 40, (2, 6), (2, 8), 10, 3, 0),
    Profile("regular", 35, 2, 45, (3, 10), (1, 6), 30, 6, 10),
    Profile("heavy", 20, 3, 65, (6, 16), (1, 4), 60, 2, 20),
    Profile("power", 5, 4, 85, (10, 25), (1, 3), 85, 1, 40),
)


class UserSpec(NamedTuple):
    name: str
    profile: str
    org: str | None
    buyer: bool
    wait_ns: int
    start_credits: int  # micro-credits bought at the start (0: none)
    promo: bool  # receives the mid-run promotional grant


class OrgSpec(NamedTuple):
    name: str
    members: int
    pool: int  # micro-credits topped up at the start
    overage_cap: int


class RequestSpec(NamedTuple):
    """One request as the user makes it: at `at` (ns), `units` estimated, `actual` used,
    finishing `duration` ns later; `reported` usage goes through the settlement worker."""

    at: int
    user: int
    key: str
    feature: str
    units: int
    actual: int
    duration: int
    reported: bool


@dataclass(frozen=True, slots=True)
class Workload:
    config: DemoConfig
    users: tuple[UserSpec, ...]
    orgs: tuple[OrgSpec, ...]
    requests: tuple[RequestSpec, ...]
    samples: tuple[int, ...]  # indices of the users whose balances are charted


def workload(config: DemoConfig) -> Workload:
    """Users, organisations and requests, drawn from `config.seed` alone."""
    check_config(config)
    rng = random.Random(config.seed)
    profiles = _assign_profiles(rng, config.users)
    org_count = min(len(ORG_NAMES), max(1, config.users // 25))
    users = tuple(_user(rng, i, profiles[i], org_count) for i in range(config.users))
    orgs = tuple(_org(i, sum(u.org == ORG_NAMES[i] for u in users)) for i in range(org_count))
    requests: list[RequestSpec] = []
    for index, user in enumerate(users):
        requests += _sessions(rng, config, index, _profile(user.profile))
    requests.sort(key=lambda r: (r.at, r.user, r.key))
    return Workload(config, users, orgs, tuple(requests), _samples(users))


def check_config(config: DemoConfig) -> None:
    for name, value, high in (
        ("users", config.users, USERS_MAX),
        ("hours", config.hours, HOURS_MAX),
    ):
        if type(value) is not int or not 1 <= value <= high:
            raise DemoError(f"--{name} must be a whole number from 1 to {high}, not {value!r}")
    if type(config.seed) is not int or not 0 <= config.seed < 2**63:
        raise DemoError(f"--seed must be a whole number from 0 to 2^63-1, not {config.seed!r}")


def _profile(name: str) -> Profile:
    return next(p for p in PROFILES if p.name == name)


def _assign_profiles(rng: random.Random, users: int) -> list[str]:
    """Profiles in their shares (the rounding goes to the first), shuffled."""
    counts = [users * p.share_percent // 100 for p in PROFILES]
    counts[0] += users - sum(counts)
    names = [p.name for p, n in zip(PROFILES, counts, strict=True) for _ in range(n)]
    rng.shuffle(names)
    return names


def _user(rng: random.Random, index: int, profile_name: str, org_count: int) -> UserSpec:
    profile = _profile(profile_name)
    joins = rng.randrange(100) < (50 if profile.name == "power" else 25)
    org = ORG_NAMES[rng.randrange(org_count)] if joins else None
    buyer = rng.randrange(100) < profile.buyer_percent
    return UserSpec(
        name=f"user-{index + 1:04d}",
        profile=profile.name,
        org=org,
        buyer=buyer,
        wait_ns=profile.wait_hours * HOUR,
        start_credits=profile.start_credits * CREDIT if buyer else 0,
        promo=profile.name in ("heavy", "power"),
    )


def _org(index: int, members: int) -> OrgSpec:
    name = ORG_NAMES[index]
    cap = OVERAGE_PER_MEMBER * max(1, members) if name == "globex" else 0
    return OrgSpec(name, members, POOL_PER_MEMBER * max(1, members), cap)


def _sessions(
    rng: random.Random, config: DemoConfig, user: int, profile: Profile
) -> list[RequestSpec]:
    """Bursty sessions: each day, each slot of the waking hours (07:00-24:00) may start one."""
    out: list[RequestSpec] = []
    slot = 17 * HOUR // profile.slots
    for day in range(0, config.hours * HOUR, DAY):
        for s in range(profile.slots):
            if rng.randrange(100) >= profile.session_percent:
                continue
            at = config.start + day + 7 * HOUR + s * slot + rng.randrange(slot)
            for _ in range(rng.randint(*profile.burst)):
                if at >= config.end:
                    break
                out.append(_request(rng, at, user, len(out)))
                at += rng.randint(*profile.gap_minutes) * MINUTE + rng.randrange(MINUTE)
    return out


def _request(rng: random.Random, at: int, user: int, index: int) -> RequestSpec:
    key = f"req-{index:05d}"
    if rng.randrange(100) < 15:
        seconds = rng.choice((5, 10, 15, 20))
        failed = rng.randrange(100) < 4
        duration = rng.randint(30, 180) * NS
        return RequestSpec(at, user, key, SORA, seconds, 0 if failed else seconds, duration, True)
    units = rng.randint(10, 60)
    roll = rng.randrange(100)
    percent = rng.randint(120, 250) if roll < 4 else rng.randint(50, 100)
    actual = max(1, units * percent // 100)
    long_running = roll == 99  # outlives its one-hour reservation
    duration = rng.randint(61, 100) * MINUTE if long_running else rng.randint(1, 12) * MINUTE
    return RequestSpec(at, user, key, CODEX, units, actual, duration, False)


SAMPLE_KINDS = (
    ("power", True),
    ("heavy", True),
    ("heavy", False),
    ("regular", True),
    ("light", False),
)


def _samples(users: tuple[UserSpec, ...]) -> tuple[int, ...]:
    """Up to five users worth charting, of different kinds (profile, buys credits or not);
    users of any kind make up the number when a kind is missing."""
    chosen: list[int] = []
    for profile, buyer in SAMPLE_KINDS:
        found = [i for i, u in enumerate(users) if (u.profile, u.buyer) == (profile, buyer)]
        if found:
            chosen.append(found[0])
    chosen += [i for i in range(len(users)) if i not in chosen][: len(SAMPLE_KINDS) - len(chosen)]
    return tuple(sorted(chosen))


# -- the results --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Summary:
    """What the run did, in integers (units; money in micro-credits).

    Attributes:
        requests: requests users made (first attempts); decisions: every `decide` call,
            retries included; allowed / blocked: the decisions' verdicts.
        blocked_reasons: refusals carrying each reason ("code (layer)"); a refusal carries
            one reason for every layer that fell short.
        bought / waited / gave_up: what users did after a refusal.
        units: units served per layer (`LAYERS`), write-offs included; spent: micro-credits
            charged per money layer; charged: their sum; written_off: micro-credits no layer
            covered, over `write_offs` completions.
        purchases / purchased: credit purchases (at the start and at the wall) and their sum;
            wall_purchases / wall_purchased: those made after a refusal.
        granted: promotional micro-credits issued; expired: what expired grants gave back
            (breakage); pool_top_ups: micro-credits put into organisation pools.
        completed: usage completed in place; reported: usage reported for the worker;
            overshoots: completions above their estimate; late: completions after the
            reservation had lapsed.
    """

    users: int
    orgs: int
    hours: int
    seed: int
    requests: int
    decisions: int
    allowed: int
    blocked: int
    blocked_reasons: dict[str, int]
    bought: int
    waited: int
    gave_up: int
    units: dict[str, int]
    spent: dict[str, int]
    charged: int
    written_off: int
    write_offs: int
    purchases: int
    purchased: int
    wall_purchases: int
    wall_purchased: int
    granted: int
    expired: int
    pool_top_ups: int
    completed: int
    reported: int
    overshoots: int
    late: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Timeline:
    """Per simulated hour: units per layer (`LAYERS`) of the usage finished in that hour, and
    refusals; per sample user, own funds (purchased credits + live grants, micro-credits) at
    each hour's end (index 0: the start)."""

    start: int
    hours: int
    units: dict[str, tuple[int, ...]]
    blocked: tuple[int, ...]
    balances: dict[str, tuple[int, ...]]
    labels: dict[str, str]  # sample user -> a short description


@dataclass(frozen=True, slots=True)
class DemoResult:
    summary: Summary
    timeline: Timeline


def reason_name(code: str, layer: str, message: str) -> str:
    """How the summary names a refusal's reason: "code (layer)", and for a money layer the
    customer does not have at all, "code (layer: no ...)" (the engine's own words)."""
    if message.startswith("no "):
        return f"{code} ({layer}: {message})"
    return f"{code} ({layer})"


def layer_kind(layer: str) -> str:
    """The summary's layer for a charge's layer ("grant:x" is grants, overage is pool)."""
    if layer.startswith("grant:"):
        return "grants"
    return "pool" if layer == "overage" else layer


@dataclass(slots=True)
class _Tally:
    hours: int
    counts: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, int] = field(default_factory=dict)
    units: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LAYERS, 0))
    spent: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MONEY_LAYERS, 0))
    hourly: dict[str, list[int]] = field(default_factory=dict)
    blocked: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.hourly = {layer: [0] * self.hours for layer in LAYERS}
        self.blocked = [0] * self.hours

    def add(self, name: str, amount: int = 1) -> None:
        self.counts[name] = self.counts.get(name, 0) + amount

    def get(self, name: str) -> int:
        return self.counts.get(name, 0)

    def completion(self, c: Completion, hour: int) -> None:
        for charge in c.charges:
            kind = layer_kind(charge.layer)
            self.units[kind] += charge.units
            self.hourly[kind][hour] += charge.units
            if kind in self.spent:
                self.spent[kind] += charge.amount
        if c.written_off:
            self.add("written_off", c.written_off)
            self.add("write_offs")

    def refusal(self, d: Decision, hour: int) -> None:
        self.add("blocked")
        self.blocked[hour] += 1
        for reason in d.reasons:
            name = reason_name(reason.code, reason.layer, reason.message)
            self.reasons[name] = self.reasons.get(name, 0) + 1


# -- the runner (drives the Meter in simulated time) ---------------------------------------------

Progress = Callable[[int, int, int], None]
"""progress(simulated hours done, hours in all, decisions so far)"""


class _Runner:
    """An event queue in simulated time: requests, their completions, settlement runs and an
    hourly tick (grant expiry, balance samples, progress)."""

    def __init__(self, meter: Meter, work: Workload, progress: Progress | None) -> None:
        self.meter = meter
        self.work = work
        self.config = work.config
        self.progress = progress
        self.tally = _Tally(work.config.hours)
        self.queue: list[tuple[int, int, str, Any]] = []
        self.seq = 0
        self.clock = work.config.start  # the simulated time of the event being handled
        self.reported: list[tuple[int, int]] = []  # (decision id, hour) awaiting settlement
        self.settle_due = False
        self.balances: dict[str, list[int]] = {work.users[i].name: [] for i in work.samples}

    def push(self, at: int, kind: str, item: Any) -> None:
        self.seq += 1
        heapq.heappush(self.queue, (at, self.seq, kind, item))

    def hour(self, at: int) -> int:
        return min(self.config.hours - 1, max(0, (at - self.config.start) // HOUR))

    def setup(self) -> None:
        m, now = self.meter, self.config.start
        m.publish_plan(plan_from_data(plan_data(), "demo plan"))
        m.publish_prices(
            price_book_from_data({"version": 1, "effective_from": 0, "prices": PRICES})
        )
        for org in self.work.orgs:
            m.add_org(org.name, now, overage_cap=org.overage_cap)
            m.top_up_pool(org.name, org.pool, "start", now)
            self.tally.add("pool_top_ups", org.pool)
        welcome_expires = now + self.config.hours * HOUR // 2
        for user in self.work.users:
            m.add_customer(user.name, PLAN, now, org=user.org)
            m.grant(user.name, "welcome", WELCOME_GRANT, welcome_expires, now)
            self.tally.add("granted", WELCOME_GRANT)
            if user.start_credits:
                self.buy(user.name, user.start_credits, "start", now)
        for h in range(1, self.config.hours + 1):
            self.push(now + h * HOUR, "tick", h)
        self.push(now + self.config.hours * HOUR * 3 // 5, "promo", None)
        for request in self.work.requests:
            self.push(request.at, "request", (request, 0))
        self.tally.add("requests", len(self.work.requests))
        self.sample()

    def buy(self, customer: str, amount: int, purchase_id: str, now: int) -> None:
        self.meter.purchase(customer, amount, purchase_id, now)
        self.tally.add("purchases")
        self.tally.add("purchased", amount)

    def loop(self) -> None:
        handlers: dict[str, Callable[[int, Any], None]] = {
            "request": self.on_request,
            "finish": self.on_finish,
            "settle": self.on_settle,
            "tick": self.on_tick,
            "promo": self.on_promo,
        }
        while self.queue:
            at, _, kind, item = heapq.heappop(self.queue)
            self.clock = at
            handlers[kind](at, item)

    def on_request(self, now: int, item: tuple[RequestSpec, int]) -> None:
        spec, attempt = item
        user = self.work.users[spec.user]
        key = spec.key if attempt == 0 else f"{spec.key}.retry{attempt}"
        decision = self.meter.decide(user.name, spec.feature, spec.units, key, now)
        self.tally.add("decisions")
        if decision.allowed:
            self.tally.add("allowed")
            self.push(now + spec.duration, "finish", (spec, decision))
            return
        self.tally.refusal(decision, self.hour(now))
        self.after_refusal(now, spec, attempt, key, decision)

    def after_refusal(
        self, now: int, spec: RequestSpec, attempt: int, key: str, d: Decision
    ) -> None:
        """A buyer buys what `unblock` asks (in whole packs) and retries at once; others
        wait for `retry_after` when it is soon enough for them, or give up."""
        user = self.work.users[spec.user]
        buy = next((u for u in d.unblock if u.action == "buy_credits" and u.amount > 0), None)
        if attempt + 1 >= ATTEMPTS_MAX:
            self.tally.add("gave_up")
        elif user.buyer and buy is not None:
            amount = -(-buy.amount // PACK) * PACK
            self.buy(user.name, amount, f"{key}.wall", now)
            self.tally.add("wall_purchases")
            self.tally.add("wall_purchased", amount)
            self.tally.add("bought")
            self.push(now, "request", (spec, attempt + 1))
        elif d.retry_after is not None and d.retry_after <= user.wait_ns:
            self.tally.add("waited")
            self.push(now + d.retry_after, "request", (spec, attempt + 1))
        else:
            self.tally.add("gave_up")

    def on_finish(self, now: int, item: tuple[RequestSpec, Decision]) -> None:
        spec, d = item
        if spec.actual > spec.units:
            self.tally.add("overshoots")
        if now >= d.now + d.timeout * NS:
            self.tally.add("late")
        if not spec.reported:
            self.tally.completion(
                self.meter.complete(d.decision_id, spec.actual, now), self.hour(now)
            )
            self.tally.add("completed")
            return
        user = self.work.users[spec.user].name
        usage_key = f"usage-{d.key}"
        self.meter.report_usage(user, spec.feature, spec.actual, usage_key, d.decision_id, now, now)
        self.tally.add("reported")
        self.reported.append((d.decision_id, self.hour(now)))
        if not self.settle_due:
            self.settle_due = True
            self.push(now + SETTLE_EVERY, "settle", None)

    def on_settle(self, now: int, _: None) -> None:
        self.settle_due = False
        while self.meter.settle_pending(WORKER, now):
            pass
        self.collect_settled()

    def collect_settled(self) -> None:
        waiting: list[tuple[int, int]] = []
        for decision_id, hour in self.reported:
            completion = self.meter.completion(decision_id)
            if completion is None:
                waiting.append((decision_id, hour))
            else:
                self.tally.completion(completion, hour)
        self.reported = waiting

    def on_tick(self, now: int, hour: int) -> None:
        self.expire(now)
        self.sample()
        if self.progress is not None:
            self.progress(hour, self.config.hours, self.tally.get("decisions"))

    def expire(self, now: int) -> None:
        for transfer in self.meter.expire_grants(now):
            self.tally.add("expired", transfer.amount)

    def on_promo(self, now: int, _: None) -> None:
        expires = self.config.end + DAY
        for user in self.work.users:
            if user.promo:
                self.meter.grant(user.name, "promo", PROMO_GRANT, expires, now)
                self.tally.add("granted", PROMO_GRANT)

    def sample(self) -> None:
        for name, series in self.balances.items():
            found = self.meter.balances(name)
            own = found["credits"] + sum(v for k, v in found.items() if k.startswith("grant:"))
            series.append(own)

    def finish(self) -> None:
        """Settle what is still reported, sweep expired grants once more, take the last sample."""
        from ledger.metering.settlement import run_worker

        last = max(self.config.end, self.clock)  # the last tasks finish after the end
        run_worker(self.meter, WORKER, lambda: last)
        self.collect_settled()
        self.expire(last)
        if self.balances and len(next(iter(self.balances.values()))) <= self.config.hours:
            self.sample()

    def result(self) -> DemoResult:
        return DemoResult(self.summary(), self.timeline())

    def summary(self) -> Summary:
        t, g = self.tally, self.tally.get
        return Summary(
            users=len(self.work.users),
            orgs=len(self.work.orgs),
            hours=self.config.hours,
            seed=self.config.seed,
            requests=g("requests"),
            decisions=g("decisions"),
            allowed=g("allowed"),
            blocked=g("blocked"),
            blocked_reasons=dict(sorted(t.reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
            bought=g("bought"),
            waited=g("waited"),
            gave_up=g("gave_up"),
            units=dict(t.units),
            spent=dict(t.spent),
            charged=sum(t.spent.values()),
            written_off=g("written_off"),
            write_offs=g("write_offs"),
            purchases=g("purchases"),
            purchased=g("purchased"),
            wall_purchases=g("wall_purchases"),
            wall_purchased=g("wall_purchased"),
            granted=g("granted"),
            expired=g("expired"),
            pool_top_ups=g("pool_top_ups"),
            completed=g("completed"),
            reported=g("reported"),
            overshoots=g("overshoots"),
            late=g("late"),
        )

    def timeline(self) -> Timeline:
        labels = {}
        for i in self.work.samples:
            u = self.work.users[i]
            buys = "buys credits" if u.buyer else "does not buy"
            labels[u.name] = f"{u.profile}, {buys}" + (f", {u.org}" if u.org else "")
        return Timeline(
            start=self.config.start,
            hours=self.config.hours,
            units={k: tuple(v) for k, v in self.tally.hourly.items()},
            blocked=tuple(self.tally.blocked),
            balances={k: tuple(v) for k, v in self.balances.items()},
            labels=labels,
        )


def run(meter: Meter, work: Workload, progress: Progress | None = None) -> DemoResult:
    """Drive `meter` (fresh: nothing published yet) through `work` in simulated time."""
    runner = _Runner(meter, work, progress)
    runner.setup()
    runner.loop()
    runner.finish()
    return runner.result()


# -- the database file --------------------------------------------------------------------------

_SQLITE_HEADER = b"SQLite format 3\x00"


def is_demo_database(path: Path) -> bool:
    """Whether `path` is a Tollgate database that a demo made (it carries the demo's marker);
    read only, and nothing is written, whatever the file is."""
    try:
        with path.open("rb") as f:
            if f.read(len(_SQLITE_HEADER)) != _SQLITE_HEADER:
                return False
    except OSError:
        return False
    # immutable=1 reads without creating -wal/-shm files; an unclean file's WAL needs mode=ro
    mode = "mode=ro" if Path(f"{path}-wal").exists() else "immutable=1"
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
    except sqlite3.Error:
        return False
    try:
        [app_id] = db.execute("PRAGMA application_id").fetchone()
        if app_id != APPLICATION_ID:
            return False
        row = db.execute("SELECT 1 FROM meter_records WHERE kind = ?", (MARKER_KIND,)).fetchone()
        return row is not None
    except sqlite3.Error:
        return False
    finally:
        db.close()


def check_database_path(path: Path) -> bool:
    """True when `path` holds a previous demo's database (to be replaced), False when there is
    no file; any other file is refused (`DemoError`): the demo never overwrites it."""
    if not path.exists():
        if not path.parent.is_dir():
            raise DemoError(f"{path.parent} is not a folder; create it or choose another --db")
        return False
    if path.is_dir():
        raise DemoError(f"{path} is a folder; give --db a file name such as ./tollgate-demo.db")
    if not is_demo_database(path):
        raise DemoError(
            f"{path} exists and is not a database an earlier `tollgate demo` made; "
            "the demo will not overwrite it: choose another --db or remove the file yourself"
        )
    return True


def open_demo_store(path: Path, *, synchronous: str = "NORMAL") -> SqliteStore:
    """A fresh SQLite store at `path`, replacing a previous demo's database (and its WAL files)
    but nothing else. `synchronous=NORMAL` in WAL mode stays consistent after a crash but may
    lose the last transactions on a power cut: right for a throwaway demo file, and it keeps
    the run from timing the disk's fsync instead of the engine."""
    if check_database_path(path):
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
    return SqliteStore(path, synchronous=synchronous)


def mark_demo(meter: Meter, config: DemoConfig) -> None:
    """Record in the database that a demo made it (so a later demo may replace it)."""
    body = json.dumps({"users": config.users, "hours": config.hours, "seed": config.seed})
    meter.tables.write(
        meter.store,
        config.start,
        lambda cur: meter.tables.put_record(cur, MARKER_KIND, "run", body),
    )
