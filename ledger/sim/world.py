"""The seeded workload and fault generator: from a seed alone, a configuration and a list of steps.

Everything is drawn from one `random.Random(seed)`; nothing reads the wall clock, the global
random generator, or the iteration order of a set. The world never sees the system's answers:
`generate(seed, steps)` is a pure function of its arguments, so any subsequence of its steps can
be replayed on its own (that is what shrinking does). A step that names something an earlier,
removed step created (a decision, a usage report, a stalled claim) is still run; the model then
expects the error a client would get.

Time is simulated integer nanoseconds that only the world advances, on a 1 ms grid from `T0`.
Each node (API nodes, settlement workers) reads it through its own clock offset (skew).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

NS = 10**9
MS = 10**6
T0 = 1_704_283_200 * NS  # 2024-01-03 12:00:00 UTC, a Wednesday
FEATURES = ("codex.task", "sora.video")
LEASE_NS = 30 * NS
OPS_LEDGER = 2
AMOUNT_MAX = 2**63 - 1

# Flags as the ledger numbers them (restated: the world builds plain numbers).
LINKED, PENDING, POST, VOID, BAL_DR, BAL_CR = 1, 2, 4, 8, 16, 32
DR_GUARD, CR_GUARD, HISTORY, CLOSED = 2, 4, 8, 16


@dataclass(frozen=True, slots=True)
class Node:
    """A process of the deployment: `api<n>` serves decisions, `worker<n>` settles usage. Its
    clock reads the simulated time plus `offset` ns."""

    name: str
    offset: int


@dataclass(frozen=True, slots=True)
class Config:
    """What the seed fixes besides the steps: the nodes and their clock offsets."""

    seed: int
    nodes: tuple[Node, ...]
    lease_ns: int
    ops_offset: int  # the ledger client lane's clock: ahead of every node

    def header(self) -> str:
        clocks = " ".join(f"{n.name}{n.offset // MS:+d}ms" for n in self.nodes)
        return f"seed {self.seed}; nodes {clocks}; lease {self.lease_ns // NS}s"

    @property
    def api_nodes(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.name.startswith("api")]

    @property
    def worker_nodes(self) -> list[int]:
        return [i for i, n in enumerate(self.nodes) if n.name.startswith("worker")]


@dataclass(frozen=True, slots=True)
class OpsAccount:
    """An account of the ledger client lane (ledger 2), numbered `n` within the run."""

    n: int
    flags: int
    code: int

    def text(self) -> str:
        names = [("dr-guard", DR_GUARD), ("cr-guard", CR_GUARD), ("closed", CLOSED)]
        names += [("history", HISTORY), ("linked", LINKED)]
        shown = ",".join(name for name, bit in names if self.flags & bit)
        return f"account a{self.n}" + (f"[{shown}]" if shown else "")


@dataclass(frozen=True, slots=True)
class OpsTransfer:
    """A transfer of the ledger client lane; accounts and pending transfers by run number
    (0: none). `ledger` 0 on a post or void means "as the pending transfer"."""

    n: int
    dr: int
    cr: int
    amount: int
    pending: int = 0
    timeout: int = 0
    flags: int = 0
    code: int = 1
    ledger: int = OPS_LEDGER

    def text(self) -> str:
        names = [("linked", LINKED), ("pending", PENDING), ("post", POST), ("void", VOID)]
        names += [("bal-dr", BAL_DR), ("bal-cr", BAL_CR)]
        shown = ",".join(name for name, bit in names if self.flags & bit)
        what = f"t{self.n} a{self.dr}->a{self.cr} {self.amount}"
        if self.pending:
            what += f" of t{self.pending}"
        if self.timeout:
            what += f" {self.timeout}s"
        if self.ledger != OPS_LEDGER:
            what += f" ledger{self.ledger}"
        return what + (f"[{shown}]" if shown else "")


OpsEvent = OpsAccount | OpsTransfer


@dataclass(frozen=True, slots=True)
class Step:
    """One thing that happens: `kind` at simulated time `at` on node `node` with `args`.

    `index` is the position in the generated trace (kept when a subsequence is replayed, so a
    shrunk trace names the original steps). `fail` > 0 arms a fault: the `fail`-th store write
    transaction of this step raises before it commits; the caller sees the error and retries
    once.
    """

    index: int
    at: int
    kind: str
    node: int
    args: tuple[tuple[str, Any], ...] = ()
    fail: int = 0

    def arg(self, name: str) -> Any:
        for key, value in self.args:
            if key == name:
                return value
        raise KeyError(name)

    def opt(self, name: str, default: Any = None) -> Any:
        for key, value in self.args:
            if key == name:
                return value
        return default

    def text(self, config: Config) -> str:
        node = config.nodes[self.node].name if self.node >= 0 else "admin"
        node = "client" if self.kind == "ops" else node  # a client of the ledger itself
        shown = []
        for key, value in self.args:
            if key in ("plan_json", "prices_json"):
                continue
            if key == "events":
                shown.append("[" + "; ".join(e.text() for e in value) + "]")
            elif key == "reports":
                shown.append("[" + "; ".join(_report_text(r) for r in value) + "]")
            elif key == "report":
                shown.append(_report_text(value))
            elif value is None:
                continue
            elif key == "expires_at":
                shown.append(f"{key}={clock_text(value)}")
            elif key == "features":
                shown.append(f"features={','.join(value)}")
            else:
                shown.append(f"{key}={value}")
        fault = f" (fault: write #{self.fail} fails)" if self.fail else ""
        return f"#{self.index} {clock_text(self.at)} {node} {self.kind} {' '.join(shown)}{fault}"


def _report_text(r: tuple[str, str, str, int, int]) -> str:
    customer, key, ukey, units, occurred = r
    return f"{customer}/{key} {ukey} {units}u @{clock_text(occurred)}"


def clock_text(at: int) -> str:
    """Simulated time as +H:MM:SS.mmm from T0 (0, the epoch, as "0")."""
    if at == 0:
        return "0"
    offset = at - T0
    sign = "-" if offset < 0 else "+"
    ms = abs(offset) // MS
    return f"{sign}{ms // 3_600_000}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}"


def plan_summary(plan: dict[str, Any]) -> str:
    parts = []
    for feature, fp in plan["features"].items():
        layers = []
        for layer in fp["layers"]:
            kind = layer["kind"]
            if kind == "windows":
                ws = [f"{w['name']}:{w['limit']}/{w['length']}s" for w in layer["windows"]]
                ws += [f"shared:{s}" for s in layer.get("shared", [])]
                layers.append("windows(" + ",".join(ws) + ")")
            elif kind == "allowance":
                layers.append(f"allowance({layer['amount']}/{layer['period']})")
            else:
                layers.append(kind)
        parts.append(f"{feature}: {' > '.join(layers)}; hold {fp['reservation_timeout']}s")
    return " | ".join(parts)


# --- the generator ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Issued:
    customer: str
    key: str
    feature: str
    units: int
    timeout: int | None
    at: int
    used: bool = False  # completed or reported by the world already


@dataclass(slots=True)
class _OpsState:
    accounts: list[OpsAccount] = field(default_factory=list)
    transfers: list[OpsTransfer] = field(default_factory=list)
    pendings: list[tuple[OpsTransfer, int]] = field(default_factory=list)  # (pending, index)
    counter: int = 0

    def next_n(self) -> int:
        self.counter += 1
        return self.counter


class World:
    """Draws steps from `random.Random(seed)`; see the module docstring."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        rng = self.rng
        api = [Node(f"api{i}", 0 if i == 0 else rng.randrange(-3000, 3001) * MS) for i in range(3)]
        api = api[: rng.choice((2, 3))]
        workers = [Node(f"worker{i}", rng.randrange(-2000, 2001) * MS) for i in range(2)]
        nodes = tuple(api + workers)
        self.config = Config(
            seed=seed,
            nodes=nodes,
            lease_ns=LEASE_NS,
            ops_offset=max(n.offset for n in nodes) + MS,
        )
        self.now = T0
        self.index = 0
        self.steps: list[Step] = []
        self.queue: list[tuple[str, dict[str, Any], int]] = []  # forced steps (bursts)
        self.scheduled: list[tuple[int, str, dict[str, Any], int]] = []  # (at, kind, args, node)
        self.customers: list[tuple[str, str, str | None]] = []  # (name, plan, org)
        self.orgs: list[str] = []
        self.plans: dict[str, dict[str, Any]] = {}  # latest version's data per plan name
        self.book_version = 0
        self.issued: list[_Issued] = []
        self.reports: list[tuple[str, str, str, int, int]] = []  # undelivered (reorder buffer)
        self.delivered: list[tuple[str, str, str, int, int]] = []
        self.purchases: list[tuple[str, str, int]] = []
        self.stalled: list[str] = []
        self.counters: dict[str, int] = {}
        self.ops = _OpsState()

    # -- helpers ------------------------------------------------------------------------------

    def _next(self, prefix: str) -> str:
        n = self.counters.get(prefix, 0) + 1
        self.counters[prefix] = n
        return f"{prefix}{n}"

    def _emit(self, kind: str, node: int, args: dict[str, Any], *, fail: bool = True) -> None:
        armed = 0
        if fail and self.rng.random() < 0.05:
            armed = self.rng.randint(1, 3)
        self.steps.append(Step(self.index, self.now, kind, node, tuple(args.items()), armed))
        self.index += 1

    def _api(self) -> int:
        return self.rng.choice(self.config.api_nodes)

    def _worker(self) -> int:
        return self.rng.choice(self.config.worker_nodes)

    def _advance(self) -> None:
        r = self.rng.random()
        if r < 0.55:
            dt = self.rng.randrange(0, 1000) * MS
        elif r < 0.97:
            dt = self.rng.randrange(1000, 30_000) * MS
        else:
            dt = self.rng.randrange(60_000, 1_800_000) * MS
        self.now += dt

    # -- plans and prices ---------------------------------------------------------------------

    def _plan(self, name: str, version: int, effective_from: int) -> dict[str, Any]:
        rng = self.rng
        team = name == "team"
        shared = rng.random() < 0.3
        features: dict[str, Any] = {}
        with_windows: list[str] = []
        for feature in FEATURES:
            layers: list[dict[str, Any]] = []
            if rng.random() < 0.85:
                windows = [self._window("w1")]
                if rng.random() < 0.4:
                    windows.append(self._window("w2"))
                layer: dict[str, Any] = {"kind": "windows", "windows": windows}
                if shared:
                    layer["shared"] = ["s"]
                    with_windows.append(feature)
                layers.append(layer)
            if rng.random() < 0.45:
                period = rng.choice(("day", "day", "week", "month"))
                layers.append(
                    {"kind": "allowance", "amount": rng.randrange(20, 800), "period": period}
                )
            money = ["grants", "credits"] + (["pool"] if team else [])
            if rng.random() < 0.3:
                rng.shuffle(money)
            layers += [{"kind": kind} for kind in money if rng.random() < 0.92]
            if not layers:
                layers.append({"kind": "credits"})
            timeout = rng.choice((20, 45, 60, 120, 300, 600))
            features[feature] = {"layers": layers, "reservation_timeout": timeout}
        plan: dict[str, Any] = {
            "plan": name,
            "version": version,
            "effective_from": effective_from,
            "features": features,
        }
        if with_windows:
            weights = {f: rng.randint(1, 3) for f in with_windows}
            limit = rng.randrange(100, 3000)
            length = rng.choice((300, 1800, 3600))
            plan["shared_windows"] = [
                {"name": "s", "length": length, "limit": limit, "weights": weights}
            ]
        return plan

    def _window(self, name: str) -> dict[str, Any]:
        length = self.rng.choice((60, 300, 600, 3600, 18000))
        return {"name": name, "length": length, "limit": self.rng.randrange(30, 1500)}

    def _publish_plan(self, name: str, effective_from: int) -> None:
        version = self.plans[name]["version"] + 1 if name in self.plans else 1
        plan = self._plan(name, version, effective_from)
        self.plans[name] = plan
        args = {
            "plan": name,
            "version": version,
            "effective_from": clock_text(effective_from),
            "layers": plan_summary(plan),
            "plan_json": json.dumps(plan, sort_keys=True),
        }
        self._emit("publish_plan", -1, args)

    def _publish_prices(self, effective_from: int) -> None:
        self.book_version += 1
        prices = {f: self.rng.randint(1, 25) for f in FEATURES}
        book = {"version": self.book_version, "effective_from": effective_from, "prices": prices}
        args = {
            "version": self.book_version,
            "effective_from": clock_text(effective_from),
            "prices": ",".join(f"{f}={p}" for f, p in prices.items()),
            "prices_json": json.dumps(book, sort_keys=True),
        }
        self._emit("publish_prices", -1, args)

    # -- set-up -------------------------------------------------------------------------------

    def _setup(self) -> None:
        rng = self.rng
        self._publish_prices(0)
        self._publish_plan("pro", 0)
        self._publish_plan("team", 0)
        for _ in range(rng.randint(1, 2)):
            org = self._next("org")
            self.orgs.append(org)
            cap = rng.choice((0, 0, rng.randrange(1000, 50_000)))
            self._emit("add_org", -1, {"org": org, "overage_cap": cap})
            self._emit(
                "top_up",
                -1,
                {"org": org, "amount": rng.randrange(1000, 80_000), "top_up_id": self._next("t")},
            )
        for _ in range(rng.randint(3, 6)):
            self._add_customer()

    def _add_customer(self) -> None:
        rng = self.rng
        name = rng.choice(("ada", "bob", "cy", "dee", "eve", "fay", "gus", "hal")) + str(
            len(self.customers) + 1
        )
        org = rng.choice(self.orgs) if self.orgs and rng.random() < 0.4 else None
        plan = "team" if org is not None else "pro"
        self.customers.append((name, plan, org))
        self._emit("add_customer", -1, {"customer": name, "plan": plan, "org": org})
        if rng.random() < 0.85:
            self._purchase(name)
        if rng.random() < 0.6:
            self._grant(name)

    def _purchase(self, customer: str) -> None:
        rng = self.rng
        if self.purchases and rng.random() < 0.1:
            # Redelivery of an earlier purchase: same id, usually the same amount.
            who, pid, amount = rng.choice(self.purchases)
            if rng.random() < 0.2:
                amount += 1
            self._emit("purchase", -1, {"customer": who, "amount": amount, "purchase_id": pid})
            return
        amount = rng.choice((rng.randrange(500, 5000), rng.randrange(5000, 60_000)))
        pid = self._next("p")
        self.purchases.append((customer, pid, amount))
        self._emit("purchase", -1, {"customer": customer, "amount": amount, "purchase_id": pid})

    def _grant(self, customer: str) -> None:
        rng = self.rng
        expires = self.now + rng.randrange(60, 6 * 3600) * NS + rng.randrange(0, 1000) * MS
        features = rng.choice((None, None, (rng.choice(FEATURES),)))
        args = {
            "customer": customer,
            "grant": self._next("g"),
            "amount": rng.randrange(100, 20_000),
            "expires_at": expires,
            "priority": rng.randint(0, 3),
            "features": features,
        }
        self._emit("grant", -1, args)

    # -- the main loop ------------------------------------------------------------------------

    def generate(self, count: int) -> list[Step]:
        self._setup()
        while self.index < count:
            self._advance()
            due = [s for s in self.scheduled if s[0] <= self.now]
            if due:
                self.scheduled = [s for s in self.scheduled if s[0] > self.now]
                for at, kind, args, node in sorted(due, key=lambda d: d[0]):
                    saved, self.now = self.now, max(at, self.steps[-1].at if self.steps else at)
                    self._emit(kind, node, args, fail=kind != "ops")
                    if kind == "resume" and self.config.nodes[node].name in self.stalled:
                        self.stalled.remove(self.config.nodes[node].name)
                    self.now = max(saved, self.now)
                continue
            if self.queue:
                kind, args, node = self.queue.pop(0)
                self._emit(kind, node, args)
                continue
            self._one()
        return self.steps[:count]

    def _one(self) -> None:
        rng = self.rng
        choices: Sequence[tuple[str, int]] = (
            ("decide", 26),
            ("complete", 12),
            ("report", 7),
            ("deliver", 6),
            ("settle", 7),
            ("stall", 3),
            ("redeliver", 3),
            ("duplicate", 4),
            ("purchase", 5),
            ("grant", 3),
            ("top_up", 1),
            ("expire_grants", 3),
            ("publish_prices", 1),
            ("publish_plan", 1),
            ("kill", 2),
            ("ops", 9),
            ("add_customer", 1),
        )
        total = sum(w for _, w in choices)
        pick = rng.randrange(total)
        for kind, weight in choices:
            if pick < weight:
                getattr(self, f"_g_{kind}")()
                return
            pick -= weight

    def _customer(self) -> str:
        return self.rng.choice(self.customers)[0]

    def _units(self) -> int:
        r = self.rng.random()
        if r < 0.55:
            return self.rng.randint(1, 50)
        if r < 0.85:
            return self.rng.randint(50, 400)
        if r < 0.96:
            return self.rng.randint(400, 4000)
        return self.rng.choice((10**5, 10**6, 10**9))

    def _g_decide(self) -> None:
        rng = self.rng
        customer = self._customer()
        burst = rng.randint(2, 8) if rng.random() < 0.12 else 1
        feature = rng.choice(FEATURES)
        node = self._api()
        for i in range(burst):
            key = self._next("k")
            units = self._units() if i == 0 or rng.random() < 0.3 else rng.randint(1, 60)
            timeout = rng.randint(1, 240) if rng.random() < 0.1 else None
            self.issued.append(_Issued(customer, key, feature, units, timeout, self.now))
            args = {
                "customer": customer,
                "feature": feature,
                "units": units,
                "key": key,
                "timeout": timeout,
            }
            if i == 0:
                self._emit("decide", node, args)
            else:
                self.queue.append(("decide", args, node))

    def _open(self) -> _Issued | None:
        """A decision the world has not completed or reported yet (recent ones likelier)."""
        open_ = [d for d in self.issued[-60:] if not d.used]
        if not open_:
            return None
        return open_[min(len(open_) - 1, int(self.rng.expovariate(0.15)))]

    def _actual(self, units: int) -> int:
        r = self.rng.random()
        if r < 0.1:
            return 0
        if r < 0.3:
            return self.rng.randint(0, max(0, units - 1))
        if r < 0.7:
            return units
        return units + self.rng.randint(1, units + 20)

    def _g_complete(self) -> None:
        d = self._open()
        if d is None:
            return self._g_decide()
        d.used = True
        actual = self._actual(d.units)
        args: dict[str, Any] = {"customer": d.customer, "key": d.key, "actual": actual}
        self._emit("complete", self._api(), args)
        if self.rng.random() < 0.1:  # the client retries the completion (maybe elsewhere)
            again = dict(args)
            if self.rng.random() < 0.3:
                again["actual"] = actual + 1
            self.queue.append(("complete", again, self._api()))

    def _g_report(self) -> None:
        d = self._open()
        if d is None:
            return self._g_decide()
        d.used = True
        occurred = d.at + self.rng.randrange(0, 5000) * MS
        report = (d.customer, d.key, self._next("u"), self._actual(d.units), occurred)
        self.reports.append(report)

    def _g_deliver(self) -> None:
        rng = self.rng
        if not self.reports and not self.delivered:
            return self._g_report()
        batch = []
        for _ in range(rng.choice((1, 1, 2, 3, 4))):
            if self.reports and (rng.random() < 0.85 or not self.delivered):
                report = self.reports.pop(rng.randrange(len(self.reports)))  # out of order
                self.delivered.append(report)
            elif self.delivered:
                report = rng.choice(self.delivered[-30:])  # redelivery of a report
                if rng.random() < 0.15:
                    c, k, u, units, occurred = report
                    report = (c, k, u, units + 1, occurred)  # same key, different body
            else:
                break
            batch.append(report)
        if not batch:
            return None
        if len(batch) == 1:
            self._emit("report", self._api(), {"report": batch[0]})
        else:
            self._emit("report_batch", self._api(), {"reports": tuple(batch)})
        return None

    def _g_settle(self) -> None:
        limit = self.rng.choice((1, 3, 10, 50))
        self._emit("settle", self._worker(), {"worker": None, "limit": limit})

    def _g_stall(self) -> None:
        """A worker claims and stalls past its lease; another settles what it held; then the
        stalled one resumes (and must not charge again). Sometimes it resumes in time."""
        node = self._worker()
        name = self.config.nodes[node].name
        if name in self.stalled:
            return self._g_settle()
        self.stalled.append(name)
        for _ in range(3):
            self._g_report()  # usage for the stalled worker to hold
        self._g_deliver()
        self._emit("stall", node, {"limit": self.rng.choice((1, 5, 20))})
        lease = self.config.lease_ns
        other = next(i for i in self.config.worker_nodes if i != node)
        late = self.rng.random() < 0.8
        settle_at = self.now + (lease + self.rng.randrange(1, 5000) * MS if late else MS)
        resume_at = settle_at + self.rng.randrange(1, 5000) * MS
        self.scheduled.append((settle_at, "settle", {"worker": None, "limit": 50}, other))
        self.scheduled.append((resume_at, "resume", {}, node))
        return None

    def _g_resume(self) -> None:
        return self._g_settle()

    def _g_redeliver(self) -> None:
        if not self.delivered:
            return self._g_settle()
        c, _, ukey, _, _ = self.rng.choice(self.delivered[-40:])
        self._emit("redeliver", self._worker(), {"customer": c, "usage_key": ukey})
        return None

    def _g_duplicate(self) -> None:
        if not self.issued:
            return self._g_decide()
        d = self.rng.choice(self.issued[-40:])
        units = d.units if self.rng.random() < 0.85 else d.units + 1
        args = {
            "customer": d.customer,
            "feature": d.feature,
            "units": units,
            "key": d.key,
            "timeout": d.timeout,
        }
        self._emit("decide", self._api(), args)
        return None

    def _g_purchase(self) -> None:
        self._purchase(self._customer())

    def _g_grant(self) -> None:
        self._grant(self._customer())

    def _g_top_up(self) -> None:
        if not self.orgs:
            return self._g_purchase()
        amount = self.rng.randrange(1000, 50_000)
        org = self.rng.choice(self.orgs)
        self._emit("top_up", -1, {"org": org, "amount": amount, "top_up_id": self._next("t")})
        return None

    def _g_expire_grants(self) -> None:
        self._emit("expire_grants", self._api(), {})

    def _g_publish_prices(self) -> None:
        self._publish_prices(self.now + self.rng.randrange(0, 1800) * NS)

    def _g_publish_plan(self) -> None:
        self._publish_plan(
            self.rng.choice(("pro", "team")), self.now + self.rng.randrange(0, 1800) * NS
        )

    def _g_kill(self) -> None:
        node = self.rng.randrange(len(self.config.nodes))
        if self.config.nodes[node].name in self.stalled:
            self.stalled.remove(self.config.nodes[node].name)
        self._emit("kill", node, {}, fail=False)

    def _g_add_customer(self) -> None:
        if len(self.customers) < 10:
            self._add_customer()

    # -- the ledger client lane ---------------------------------------------------------------

    def _g_ops(self) -> None:
        events, schedule = _ops_batch(self.rng, self.ops, self.now)
        self._emit("ops", -1, {"events": tuple(events)})
        if schedule is not None:
            delay, post = schedule
            self.scheduled.append((self.now + delay, "ops", {"events": post}, -1))


def _ops_batch(
    rng: random.Random, ops: _OpsState, now: int
) -> tuple[list[OpsEvent], tuple[int, tuple[OpsEvent, ...]] | None]:
    """A batch of raw ledger events against the lane's own accounts (ledger 2): accounts with
    guards or closed, single, pending, post, void and balancing transfers, linked chains with a
    failing member, replays of earlier events (same or different body), retries of failed ids,
    amounts near the bounds. Returns the batch and, sometimes, a post scheduled to land
    exactly at a pending transfer's expiry instant."""
    if len(ops.accounts) < 3 or rng.random() < 0.12:
        return _ops_accounts(rng, ops), None
    events: list[OpsEvent] = []
    schedule = None
    for _ in range(rng.choice((1, 1, 2, 3, 4))):
        schedule = _ops_transfer(rng, ops, events) or schedule
    if len(events) >= 2 and rng.random() < 0.35:
        # Link the batch into one chain (sometimes left open at its end).
        linked = [_with_flags(e, LINKED) for e in events[:-1]]
        last = events[-1] if rng.random() < 0.9 else _with_flags(events[-1], LINKED)
        events = [*linked, last]
    return events, schedule


def _ops_accounts(rng: random.Random, ops: _OpsState) -> list[OpsEvent]:
    """A new account of the lane (sometimes submitted twice, the same or with other flags)."""
    flags = rng.choice(
        (0, DR_GUARD, DR_GUARD, CR_GUARD, DR_GUARD | HISTORY, CLOSED, DR_GUARD | CLOSED)
    )
    account = OpsAccount(ops.next_n(), flags, rng.choice((21, 22, 23)))
    ops.accounts.append(account)
    events: list[OpsEvent] = [account]
    if rng.random() < 0.3:  # the same account again: exists (or differs)
        again = account if rng.random() < 0.6 else replace(account, flags=account.flags ^ HISTORY)
        events.append(again)
    return events


def _ops_transfer(
    rng: random.Random, ops: _OpsState, events: list[OpsEvent]
) -> tuple[int, tuple[OpsEvent, ...]] | None:
    """Add one transfer event to `events`; returns a post to schedule, if one is drawn."""
    r = rng.random()
    if r < 0.1 and ops.transfers:
        events.append(rng.choice(ops.transfers[-30:]))  # replay: exists
        return None
    if r < 0.15 and ops.transfers:
        old = rng.choice(ops.transfers[-30:])  # the same id with another amount
        events.append(replace(old, amount=min(AMOUNT_MAX, old.amount + 1)))
        return None
    if r < 0.35 and ops.pendings:
        pending, _ = rng.choice(ops.pendings[-10:])
        t = _resolve(rng, ops.next_n(), pending)
        ops.transfers.append(t)
        events.append(t)
        return None
    t = _new_transfer(rng, ops.next_n(), ops)
    ops.transfers.append(t)
    events.append(t)
    if not t.flags & PENDING:
        return None
    ops.pendings.append((t, len(events) - 1))
    if t.timeout and rng.random() < 0.4 and len(events) > 1:
        # A post landing at the pending transfer's very expiry instant, placed after as many
        # events as preceded the pending one.
        fillers = [_filler(ops.next_n()) for _ in range(len(events) + 2)]
        half = max(1, t.amount // 2)
        post = OpsTransfer(ops.next_n(), 0, 0, half, t.n, flags=POST, code=0, ledger=0)
        return t.timeout * NS, (*fillers, post)
    return None


def _filler(n: int) -> OpsTransfer:
    """An event that fails on its own (no such accounts): it only takes a timestamp."""
    return OpsTransfer(n, 10_000 + n, 20_000 + n, 1)


def _with_flags(e: OpsEvent, flags: int) -> OpsEvent:
    return replace(e, flags=e.flags | flags)


def _resolve(rng: random.Random, n: int, pending: OpsTransfer) -> OpsTransfer:
    r = rng.random()
    if r < 0.45:
        amount = rng.choice(
            (pending.amount, max(1, pending.amount // 2), pending.amount + 1, 2 * pending.amount)
        )
        amount = min(AMOUNT_MAX, amount)  # above the pending amount, but a valid event
        return OpsTransfer(n, 0, 0, amount, pending.n, flags=POST, code=0, ledger=0)
    if r < 0.8:
        amount = min(AMOUNT_MAX, rng.choice((0, 0, pending.amount, pending.amount + 1)))
        return OpsTransfer(n, 0, 0, amount, pending.n, flags=VOID, code=0, ledger=0)
    # Naming the pending transfer's accounts explicitly (right or wrong).
    dr = pending.dr if rng.random() < 0.7 else pending.cr
    return OpsTransfer(
        n,
        dr,
        pending.cr,
        pending.amount,
        pending.n,
        flags=POST,
        code=pending.code,
        ledger=OPS_LEDGER,
    )


def _new_transfer(rng: random.Random, n: int, ops: _OpsState) -> OpsTransfer:
    accounts = ops.accounts
    dr = rng.choice(accounts).n
    cr = rng.choice(accounts).n
    if dr == cr and rng.random() < 0.8:
        cr = rng.choice(accounts).n
    if rng.random() < 0.04:
        dr = 9_999  # no such account
    r = rng.random()
    if r < 0.5:
        amount = rng.randrange(1, 2000)
    elif r < 0.8:
        amount = rng.randrange(2000, 200_000)
    elif r < 0.93:
        amount = AMOUNT_MAX - rng.randrange(0, 3000)  # near the bound: overflows
    else:
        amount = AMOUNT_MAX // 2 + rng.randrange(0, 10)
    flags = 0
    timeout = 0
    k = rng.random()
    if k < 0.3:
        flags = PENDING
        timeout = rng.choice((0, rng.randint(1, 90)))
    elif k < 0.4:
        flags = BAL_DR
    elif k < 0.45:
        flags = BAL_CR
    if ops.transfers and rng.random() < 0.03:
        # A retry of an earlier id that may have failed (transient failures are remembered).
        return rng.choice(ops.transfers[-20:])
    ledger = OPS_LEDGER if rng.random() < 0.97 else 3
    return OpsTransfer(n, dr, cr, amount, 0, timeout, flags, rng.choice((1, 2)), ledger)


def generate(seed: int, steps: int) -> tuple[Config, list[Step]]:
    """The configuration and the first `steps` steps of seed `seed` (a pure function)."""
    world = World(seed)
    return world.config, world.generate(steps)
