"""Where the access engine keeps what is not ledger state: the registry (plans, price books,
customers, organisations, grants), decisions and completions, and the usage and monetization
datasets with the settlement outbox. `MemoryTables` for the memory store; `SqlTables` writes the
same rows into the ledger's own SQLite or PostgreSQL database, inside the ledger's transactions,
so a decision and its holds, or a settlement and its transfers, commit together."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NamedTuple, Protocol

from ledger.metering.decision import Completion, Decision, Packed, pack_decision, unpack_decision
from ledger.metering.records import (
    Monetization,
    Rejection,
    UsageEvent,
    completion_from_json,
    completion_to_json,
    decision_from_json,
    decision_to_json,
)
from ledger.store.base import SchemaTooNewError, Store
from ledger.store.sql import SqlStore

Cursor = Any

METER_SCHEMA_VERSION = 4
"""The layout of the tables below. A database records the layout it has in `meter_schema`;
a database written before the record existed has layout 1. `SCHEMA` creates layout 1 and
`_MIGRATIONS` takes it, step by step, to this one (a new database goes the same way).
Layout 2: each outbox entry keeps the digest of its usage event as reported.
Layout 3: each completion keeps the time it was settled at (`settled_at`, 0 for those settled
before).
Layout 4: decisions indexed by time and completions by the time they were settled at."""

_VERSION_TABLE = (
    """CREATE TABLE IF NOT EXISTS meter_schema (
        id INTEGER PRIMARY KEY CHECK (id = 1), version BIGINT NOT NULL)""",
    "INSERT INTO meter_schema (id, version) VALUES (1, 1) ON CONFLICT DO NOTHING",
)
SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meter_records (
        kind TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, PRIMARY KEY (kind, key))""",
    # Counts the records put, so a process sees in one row whether its registry is stale.
    """CREATE TABLE IF NOT EXISTS meter_stamp (
        id INTEGER PRIMARY KEY CHECK (id = 1), stamp BIGINT NOT NULL)""",
    "INSERT INTO meter_stamp (id, stamp) VALUES (1, 0) ON CONFLICT DO NOTHING",
    """CREATE TABLE IF NOT EXISTS decisions (
        decision_id BIGINT PRIMARY KEY, customer TEXT NOT NULL, key TEXT NOT NULL,
        feature TEXT NOT NULL, now BIGINT NOT NULL, allowed INTEGER NOT NULL,
        units BIGINT NOT NULL,
        rooms TEXT NOT NULL,
        took TEXT NOT NULL, body TEXT NOT NULL, UNIQUE (customer, key))""",
    "CREATE INDEX IF NOT EXISTS decisions_by_time ON decisions (customer, now)",
    """CREATE TABLE IF NOT EXISTS completions (
        decision_id BIGINT PRIMARY KEY, usage_id BIGINT NOT NULL, actual_units BIGINT NOT NULL,
        transfers TEXT NOT NULL, body TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS usage_events (
        id BIGINT PRIMARY KEY, customer TEXT NOT NULL, key TEXT NOT NULL,
        feature TEXT NOT NULL, units BIGINT NOT NULL CHECK (units >= 0),
        occurred_at BIGINT NOT NULL, decision_id BIGINT NOT NULL UNIQUE,
        received_at BIGINT NOT NULL, UNIQUE (customer, key))""",
    """CREATE TABLE IF NOT EXISTS usage_rejections (
        id BIGINT PRIMARY KEY, customer TEXT NOT NULL, key TEXT NOT NULL, reason TEXT NOT NULL,
        body TEXT NOT NULL, at BIGINT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS outbox (
        usage_id BIGINT PRIMARY KEY, claimed_by TEXT, claimed_until BIGINT NOT NULL,
        attempts BIGINT NOT NULL)""",  # layout 1; see _MIGRATIONS
    """CREATE TABLE IF NOT EXISTS monetization_events (
        id BIGINT PRIMARY KEY, usage_id BIGINT NOT NULL, decision_id BIGINT NOT NULL,
        customer TEXT NOT NULL, layer TEXT NOT NULL, units BIGINT NOT NULL CHECK (units >= 0),
        price_version BIGINT NOT NULL, price BIGINT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount >= 0), account_id BIGINT NOT NULL,
        UNIQUE (usage_id, layer))""",
)
USAGE_COLUMNS = "id, customer, key, feature, units, occurred_at, decision_id, received_at"
_U_USAGE_COLUMNS = ", ".join(f"u.{c.strip()}" for c in USAGE_COLUMNS.split(","))
"""USAGE_COLUMNS of `usage_events u` in a join."""
MONETIZATION_COLUMNS = (
    "id, usage_id, decision_id, customer, layer, units, price_version, price, amount, account_id"
)


class MeterTables(Protocol):
    """Every method takes the transaction's cursor (None for memory)."""

    def write(self, store: Store, now: int, fn: Callable[[Cursor], None]) -> None:
        """Run `fn` in a write transaction of `store` (directly, for memory)."""

    def read(self, store: Store, fn: Callable[[Cursor], Any]) -> Any: ...
    def setup(self, cur: Cursor) -> None: ...
    def finish_setup(self, store: Store) -> None:
        """What `setup` leaves to be done outside its transaction, once it has committed."""

    def put_record(self, cur: Cursor, kind: str, key: str, body: str) -> None: ...
    def records(self, cur: Cursor, kind: str) -> list[tuple[str, str]]: ...
    def records_stamp(self, cur: Cursor) -> int:
        """A number that changes whenever any process puts a record."""

    def put_decision(self, cur: Cursor, d: Decision) -> None: ...
    def put_decisions(self, cur: Cursor, ds: Sequence[Decision]) -> None: ...
    def latest(self, cur: Cursor, customer: str) -> int:
        """The latest time a decision of `customer` was evaluated at (0: none)."""

    def earlier_and_latest(
        self, store: Store, pairs: Sequence[tuple[str, str]], customers: Sequence[str]
    ) -> tuple[dict[tuple[str, str], Decision], dict[str, int]]:
        """The decisions made under those (customer, idempotency key) pairs, and `latest` of
        each of `customers` that has a decision, read in one snapshot: on a database, one
        statement outside any transaction block, one index probe per pair and per customer."""

    def decision_by_key(self, cur: Cursor, customer: str, key: str) -> Decision | None: ...
    def decision_by_id(self, cur: Cursor, decision_id: int) -> Decision | None: ...
    def put_completion(self, cur: Cursor, c: Completion) -> None: ...
    def completion(self, cur: Cursor, decision_id: int) -> Completion | None: ...
    def window_history(self, cur: Cursor, horizon: int) -> list[tuple[Decision, Completion | None]]:
        """The allowed decisions made, or settled, within `horizon` ns of the latest decision,
        each with its completion (None: not settled), oldest decision first."""

    def decision_heads(self, cur: Cursor, ids: Sequence[int]) -> dict[int, tuple[str, str, bool]]:
        """(customer, feature, allowed) of each decision among `ids` that exists."""

    def insert_usage(self, cur: Cursor, rows: Sequence[UsageEvent]) -> None:
        """The usage events and their outbox entries (one transaction: the caller's)."""

    def known_usage(
        self, cur: Cursor, keys: Sequence[tuple[str, str]], decision_ids: Sequence[int]
    ) -> list[UsageEvent]:
        """The usage events reported under any of `keys` (customer, key) or for any of
        `decision_ids`."""

    def usage_for_decision(self, cur: Cursor, decision_id: int) -> UsageEvent | None: ...
    def usage_by_id(self, cur: Cursor, usage_id: int) -> UsageEvent | None: ...
    def reject(self, cur: Cursor, rows: Sequence[Rejection]) -> None: ...
    def claim(self, cur: Cursor, worker: str, now: int, lease: int, limit: int) -> list[int]:
        """Up to `limit` outbox entries nobody holds (or whose lease ran out), in usage id
        order, now held by `worker` until `now + lease`."""

    def claimable(self, cur: Cursor, now: int, limit: int, start: int) -> list[int]:
        """Up to `limit` outbox entries nobody holds (or whose lease ran out), in usage id
        order from `start` on, then from the lowest id (a read: nothing is held)."""

    def settlement_inputs(self, cur: Cursor, usage_ids: Sequence[int]) -> list[SettlementInput]:
        """For each usage event that exists: it, its decision, whether it was settled, and the
        digest its outbox entry keeps (None when it has none)."""

    def record_settlements(
        self,
        cur: Cursor,
        done: Sequence[int],
        completions: Sequence[Completion],
        monetization: Sequence[Monetization],
    ) -> None:
        """Drop `done` from the outbox and write the completions and monetization events."""

    def insert_monetization(self, cur: Cursor, rows: list[Monetization]) -> None: ...
    def backlog(self, cur: Cursor) -> tuple[int, int | None]:
        """(unsettled usage events, oldest unsettled occurred_at)."""

    def outbox_ids(self, cur: Cursor) -> frozenset[int]: ...
    def outbox_digests(self, cur: Cursor) -> dict[int, int] | None:
        """The digest each outbox entry keeps, by usage id; None on a database of layout 1
        (written before digests were kept and not opened since by a Tollgate that migrates)."""

    def all_usage(self, cur: Cursor) -> Iterator[UsageEvent]: ...
    def all_monetization(self, cur: Cursor) -> Iterator[Monetization]: ...
    def all_rejections(self, cur: Cursor) -> Iterator[Rejection]: ...
    def rejection_count(self, cur: Cursor) -> int: ...
    def all_completions(self, cur: Cursor) -> Iterator[Completion]: ...
    def all_decisions(self, cur: Cursor) -> Iterator[Decision]: ...
    def all_allocations(self, cur: Cursor) -> Iterator[Allocation]:
        """Per decision: id, units asked, allowed, and each consulted layer's room and take."""

    def all_completion_keys(self, cur: Cursor) -> list[tuple[int, int, tuple[int, ...]]]:
        """(decision_id, usage_id, transfer ids) of every completion."""


class SettlementInput(NamedTuple):
    usage: UsageEvent
    decision: Decision
    settled: bool
    queued_digest: int | None


class Allocation(NamedTuple):
    decision_id: int
    customer: str
    feature: str
    units: int
    allowed: bool
    rooms: tuple[int, ...]
    took: tuple[int, ...]


def _joined(numbers: Sequence[int]) -> str:
    return ",".join(str(n) for n in numbers)


def _numbers(text: str) -> tuple[int, ...]:
    if "," in text:
        return tuple(map(int, text.split(",")))
    return (int(text),) if text else ()


class MemoryTables:
    """The tables in this process's memory (with the memory store)."""

    def __init__(self) -> None:
        self.meter_records: dict[tuple[str, str], str] = {}
        # Decisions are kept packed (plain tuples the garbage collector stops tracking) in a
        # list; the indexes hold only strings and ints, so no large dict is ever re-tracked.
        self._decided: list[Packed] = []
        self._decision_at: dict[int, int] = {}
        self._decision_keys: dict[str, dict[str, int]] = {}
        self.latest_at: dict[str, int] = {}
        self.completions: dict[int, Completion] = {}
        self.usage: dict[int, UsageEvent] = {}
        self.usage_keys: dict[tuple[str, str], int] = {}
        self.usage_decisions: dict[int, int] = {}
        self.rejections: dict[int, Rejection] = {}
        self.outbox: dict[int, tuple[str | None, int]] = {}
        self.outbox_digest: dict[int, int] = {}
        self.monetization: dict[int, Monetization] = {}

    def write(self, store: Store, now: int, fn: Callable[[Cursor], None]) -> None:
        fn(None)

    def read(self, store: Store, fn: Callable[[Cursor], Any]) -> Any:
        return fn(None)

    def setup(self, cur: Cursor) -> None:
        pass

    def finish_setup(self, store: Store) -> None:
        pass

    def put_record(self, cur: Cursor, kind: str, key: str, body: str) -> None:
        self.meter_records[(kind, key)] = body

    def records(self, cur: Cursor, kind: str) -> list[tuple[str, str]]:
        return sorted((k, body) for (kd, k), body in self.meter_records.items() if kd == kind)

    def records_stamp(self, cur: Cursor) -> int:
        return 0  # nothing but this process writes them

    def put_decision(self, cur: Cursor, d: Decision) -> None:
        keys = self._decision_keys.get(d.customer)
        if keys is None:
            keys = self._decision_keys[d.customer] = {}
        if d.key not in keys:
            keys[d.key] = self._decision_at[d.decision_id] = len(self._decided)
            self._decided.append(pack_decision(d))
            if d.now > self.latest_at.get(d.customer, 0):
                self.latest_at[d.customer] = d.now

    def put_decisions(self, cur: Cursor, ds: Sequence[Decision]) -> None:
        for d in ds:
            self.put_decision(cur, d)

    def latest(self, cur: Cursor, customer: str) -> int:
        return self.latest_at.get(customer, 0)

    def earlier_and_latest(
        self, store: Store, pairs: Sequence[tuple[str, str]], customers: Sequence[str]
    ) -> tuple[dict[tuple[str, str], Decision], dict[str, int]]:
        found = ((pair, self.decision_by_key(None, *pair)) for pair in pairs)
        latest = {c: self.latest_at[c] for c in customers if c in self.latest_at}
        return {pair: d for pair, d in found if d is not None}, latest

    def decision_by_key(self, cur: Cursor, customer: str, key: str) -> Decision | None:
        found = self._decision_keys.get(customer, {}).get(key)
        return None if found is None else unpack_decision(self._decided[found])

    def decision_by_id(self, cur: Cursor, decision_id: int) -> Decision | None:
        return self._unpacked(decision_id) if decision_id in self._decision_at else None

    def _unpacked(self, decision_id: int) -> Decision:
        return unpack_decision(self._decided[self._decision_at[decision_id]])

    def put_completion(self, cur: Cursor, c: Completion) -> None:
        self.completions.setdefault(c.decision_id, c)

    def completion(self, cur: Cursor, decision_id: int) -> Completion | None:
        return self.completions.get(decision_id)

    def window_history(self, cur: Cursor, horizon: int) -> list[tuple[Decision, Completion | None]]:
        since = max(self.latest_at.values(), default=0) - horizon
        found = []
        for d in map(unpack_decision, self._decided):
            c = self.completions.get(d.decision_id)
            if d.allowed and (d.now > since or (c is not None and c.settled_at > since)):
                found.append((d, c))
        return sorted(found, key=lambda dc: (dc[0].now, dc[0].decision_id))

    def decision_heads(self, cur: Cursor, ids: Sequence[int]) -> dict[int, tuple[str, str, bool]]:
        found = {i: self.decision_by_id(cur, i) for i in ids}
        return {i: (d.customer, d.feature, d.allowed) for i, d in found.items() if d is not None}

    def insert_usage(self, cur: Cursor, rows: Sequence[UsageEvent]) -> None:
        for u in rows:
            assert u.id not in self.usage and (u.customer, u.key) not in self.usage_keys
            self.usage[u.id] = u
            self.usage_keys[(u.customer, u.key)] = u.id
            self.usage_decisions[u.decision_id] = u.id
            self.outbox[u.id] = (None, 0)
            self.outbox_digest[u.id] = u.digest()

    def known_usage(
        self, cur: Cursor, keys: Sequence[tuple[str, str]], decision_ids: Sequence[int]
    ) -> list[UsageEvent]:
        ids = [self.usage_keys.get(k) for k in keys]
        ids += [self.usage_decisions.get(d) for d in decision_ids]
        return [self.usage[i] for i in dict.fromkeys(ids) if i is not None]

    def usage_for_decision(self, cur: Cursor, decision_id: int) -> UsageEvent | None:
        found = self.usage_decisions.get(decision_id)
        return None if found is None else self.usage[found]

    def usage_by_id(self, cur: Cursor, usage_id: int) -> UsageEvent | None:
        return self.usage.get(usage_id)

    def reject(self, cur: Cursor, rows: Sequence[Rejection]) -> None:
        for r in rows:
            self.rejections.setdefault(r.id, r)

    def claim(self, cur: Cursor, worker: str, now: int, lease: int, limit: int) -> list[int]:
        free = sorted(i for i, (_, until) in self.outbox.items() if until <= now)[:limit]
        for usage_id in free:
            self.outbox[usage_id] = (worker, now + lease)
        return free

    def claimable(self, cur: Cursor, now: int, limit: int, start: int) -> list[int]:
        free = sorted(i for i, (_, until) in self.outbox.items() if until <= now)
        return ([i for i in free if i >= start] + [i for i in free if i < start])[:limit]

    def settlement_inputs(self, cur: Cursor, usage_ids: Sequence[int]) -> list[SettlementInput]:
        found = [self.usage[i] for i in usage_ids if i in self.usage]
        return [
            SettlementInput(
                u,
                self._unpacked(u.decision_id),
                u.decision_id in self.completions,
                self.outbox_digest.get(u.id),
            )
            for u in found
        ]

    def record_settlements(
        self,
        cur: Cursor,
        done: Sequence[int],
        completions: Sequence[Completion],
        monetization: Sequence[Monetization],
    ) -> None:
        for usage_id in done:
            self.outbox.pop(usage_id, None)
            self.outbox_digest.pop(usage_id, None)
        for c in completions:
            self.put_completion(cur, c)
        self.insert_monetization(cur, list(monetization))

    def insert_monetization(self, cur: Cursor, rows: list[Monetization]) -> None:
        for row in rows:
            self.monetization.setdefault(row.id, row)

    def backlog(self, cur: Cursor) -> tuple[int, int | None]:
        pending = [self.usage[i].occurred_at for i in self.outbox]
        return len(pending), min(pending, default=None)

    def outbox_ids(self, cur: Cursor) -> frozenset[int]:
        return frozenset(self.outbox)

    def outbox_digests(self, cur: Cursor) -> dict[int, int] | None:
        return dict(self.outbox_digest)

    def all_usage(self, cur: Cursor) -> Iterator[UsageEvent]:
        return iter(sorted(self.usage.values(), key=lambda u: u.id))

    def all_monetization(self, cur: Cursor) -> Iterator[Monetization]:
        return iter(sorted(self.monetization.values(), key=lambda m: m.id))

    def all_rejections(self, cur: Cursor) -> Iterator[Rejection]:
        return iter(sorted(self.rejections.values(), key=lambda r: r.id))

    def rejection_count(self, cur: Cursor) -> int:
        return len(self.rejections)

    def all_completions(self, cur: Cursor) -> Iterator[Completion]:
        return iter(sorted(self.completions.values(), key=lambda c: c.decision_id))

    def all_decisions(self, cur: Cursor) -> Iterator[Decision]:
        return iter(sorted(map(unpack_decision, self._decided), key=lambda d: d.decision_id))

    def all_allocations(self, cur: Cursor) -> Iterator[Allocation]:
        return (
            Allocation(
                d.decision_id,
                d.customer,
                d.feature,
                d.units,
                d.allowed,
                tuple(c.room for c in d.consulted),
                tuple(c.took for c in d.consulted),
            )
            for d in self.all_decisions(cur)
        )

    def all_completion_keys(self, cur: Cursor) -> list[tuple[int, int, tuple[int, ...]]]:
        return sorted(
            (c.decision_id, c.usage_id, c.transfer_ids) for c in self.completions.values()
        )


class SqlTables:
    """The tables in the ledger's SQL database (SQLite or PostgreSQL), in its transactions."""

    def __init__(self, placeholder: str, *, skip_locked: bool) -> None:
        self.p = placeholder
        self.skip_locked = skip_locked

    def _q(self, sql: str) -> str:
        return sql.replace("?", self.p)

    def write(self, store: Store, now: int, fn: Callable[[Cursor], None]) -> None:
        store.apply([], now, then=lambda results, cur: fn(cur))

    def read(self, store: Store, fn: Callable[[Cursor], Any]) -> Any:
        return store.read(fn)

    def setup(self, cur: Cursor) -> None:
        for statement in _VERSION_TABLE:
            cur.execute(statement)
        cur.execute("SELECT version FROM meter_schema WHERE id = 1")
        version = int(cur.fetchone()[0])
        if version > METER_SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"the metering tables were written by a newer Tollgate (meter schema {version}, "
                f"this one reads up to {METER_SCHEMA_VERSION}); upgrade Tollgate to use this "
                "database. Nothing was written to it"
            )
        if version == 1:  # new, or from before the record: parts of layout 1 may be missing
            for statement in SCHEMA:
                cur.execute(statement)
        # A later layout has all of them. Not creating them again keeps an opening free of the
        # lock CREATE INDEX takes on PostgreSQL even when the index exists: it waits for every
        # write in progress on the table and holds every later one until the opening commits.
        while version < METER_SCHEMA_VERSION:
            version += 1
            _MIGRATIONS[version](self, cur)
            cur.execute(self._q("UPDATE meter_schema SET version = ? WHERE id = 1"), (version,))

    def finish_setup(self, store: Store) -> None:
        """PostgreSQL: build the indexes of `_BUILT_ALONE` that are missing, or left invalid by
        an interrupted build, with CREATE INDEX CONCURRENTLY: writes to the table go on while
        it is built, where a build in the set-up transaction would hold them (and, through the
        clock row, every other write) until it ends. One process builds at a time
        (`PostgresStore.taking_turns`): two builds on one table can deadlock."""
        if not self.skip_locked:
            return
        from ledger.store.postgres import PostgresStore

        assert isinstance(store, PostgresStore), "PostgreSQL tables live in a PostgreSQL store"
        if all(_index_state(store, name) for name, _ in _BUILT_ALONE):
            return
        with store.taking_turns("meter-indexes"):
            for name, on in _BUILT_ALONE:
                valid = _index_state(store, name)
                if valid:
                    continue
                if valid is not None:
                    store.run_alone(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
                store.run_alone(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {on}")

    def put_record(self, cur: Cursor, kind: str, key: str, body: str) -> None:
        cur.execute(
            self._q(
                "INSERT INTO meter_records (kind, key, body) VALUES (?, ?, ?) "
                "ON CONFLICT (kind, key) DO UPDATE SET body = excluded.body"
            ),
            (kind, key, body),
        )
        cur.execute("UPDATE meter_stamp SET stamp = stamp + 1 WHERE id = 1")

    def records(self, cur: Cursor, kind: str) -> list[tuple[str, str]]:
        cur.execute(
            self._q("SELECT key, body FROM meter_records WHERE kind = ? ORDER BY key"), (kind,)
        )
        return [(str(k), str(b)) for k, b in cur.fetchall()]

    def records_stamp(self, cur: Cursor) -> int:
        cur.execute("SELECT stamp FROM meter_stamp WHERE id = 1")
        row = cur.fetchone()
        return -1 if row is None else int(row[0])

    def put_decision(self, cur: Cursor, d: Decision) -> None:
        self.put_decisions(cur, [d])

    def put_decisions(self, cur: Cursor, ds: Sequence[Decision]) -> None:
        cur.executemany(
            self._q(
                "INSERT INTO decisions (decision_id, customer, key, feature, now, allowed, units, "
                "rooms, took, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ),
            [
                (
                    d.decision_id,
                    d.customer,
                    d.key,
                    d.feature,
                    d.now,
                    int(d.allowed),
                    d.units,
                    ",".join(str(c.room) for c in d.consulted),
                    ",".join(str(c.took) for c in d.consulted),
                    decision_to_json(d),
                )
                for d in ds
            ],
        )

    def latest(self, cur: Cursor, customer: str) -> int:
        cur.execute(self._q("SELECT MAX(now) FROM decisions WHERE customer = ?"), (customer,))
        row = cur.fetchone()
        return 0 if row is None or row[0] is None else int(row[0])

    def earlier_and_latest(
        self, store: Store, pairs: Sequence[tuple[str, str]], customers: Sequence[str]
    ) -> tuple[dict[tuple[str, str], Decision], dict[str, int]]:
        """Pairs and customers go in as one array (or JSON) parameter each, and each row
        probes the index on (customer, key) or (customer, now) in a subquery of its own: the
        plan stays one probe per row whatever the statistics said when the server cached it
        (a join or a GROUP BY planned on a nearly empty table scans the whole table once it
        has grown), and no host-parameter limit applies."""
        if not pairs and not customers:
            return {}, {}
        assert isinstance(store, SqlStore), "SQL tables live in a SQL store"
        by_pair, pair_params = self._rows_of("p", ("customer", "key"), pairs)
        each, customer_params = self._rows_of("c", ("customer",), [(c,) for c in customers])
        rows = store.query(
            "SELECT 0, p.customer, p.key, (SELECT d.body FROM decisions d "
            f"WHERE d.customer = p.customer AND d.key = p.key) FROM {by_pair} "
            "UNION ALL SELECT 1, c.customer, CAST((SELECT MAX(d.now) FROM decisions d "
            f"WHERE d.customer = c.customer) AS TEXT), NULL FROM {each}",
            pair_params + customer_params,
        )
        earlier = {
            (str(c), str(k)): decision_from_json(body)
            for kind, c, k, body in rows
            if kind == 0 and body is not None
        }
        latest = {str(c): int(at) for kind, c, at, _ in rows if kind == 1 and at is not None}
        return earlier, latest

    def _rows_of(
        self, alias: str, columns: tuple[str, ...], rows: Sequence[tuple[str, ...]]
    ) -> tuple[str, list[Any]]:
        """A FROM item `alias` whose text `columns` hold `rows`, and its parameters: arrays
        unnested on PostgreSQL, a JSON array on SQLite."""
        if self.skip_locked:  # PostgreSQL
            arrays = ", ".join(["%s::text[]"] * len(columns))
            return f"unnest({arrays}) AS {alias}({', '.join(columns)})", [
                [row[i] for row in rows] for i in range(len(columns))
            ]
        picked = ", ".join(f"json_extract(value, '$[{i}]') AS {c}" for i, c in enumerate(columns))
        return f"(SELECT {picked} FROM json_each(?)) AS {alias}", [json.dumps(list(rows))]

    def _decision(self, cur: Cursor, where: str, params: tuple[object, ...]) -> Decision | None:
        cur.execute(self._q(f"SELECT body FROM decisions WHERE {where}"), params)
        row = cur.fetchone()
        return None if row is None else decision_from_json(row[0])

    def decision_by_key(self, cur: Cursor, customer: str, key: str) -> Decision | None:
        return self._decision(cur, "customer = ? AND key = ?", (customer, key))

    def decision_by_id(self, cur: Cursor, decision_id: int) -> Decision | None:
        return self._decision(cur, "decision_id = ?", (decision_id,))

    def put_completion(self, cur: Cursor, c: Completion) -> None:
        self._insert_completions(cur, [c])

    def _insert_completions(self, cur: Cursor, completions: Sequence[Completion]) -> None:
        cur.executemany(
            self._q(
                "INSERT INTO completions "
                "(decision_id, usage_id, actual_units, transfers, body, settled_at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ),
            [
                (
                    c.decision_id,
                    c.usage_id,
                    c.actual_units,
                    _joined(c.transfer_ids),
                    completion_to_json(c),
                    c.settled_at,
                )
                for c in completions
            ],
        )

    def completion(self, cur: Cursor, decision_id: int) -> Completion | None:
        cur.execute(self._q("SELECT body FROM completions WHERE decision_id = ?"), (decision_id,))
        row = cur.fetchone()
        return None if row is None else completion_from_json(row[0])

    def window_history(self, cur: Cursor, horizon: int) -> list[tuple[Decision, Completion | None]]:
        """Through the indexes of layout 4: the work is the horizon's, not the database's. The
        decisions settled within it are found from their completions (CROSS JOIN keeps SQLite
        from walking every older decision instead)."""
        cur.execute("SELECT MAX(now) FROM decisions")
        since = int(cur.fetchone()[0] or 0) - horizon
        cur.execute(
            self._q(
                "SELECT d.now, d.decision_id, d.body, c.body FROM decisions d "
                "LEFT JOIN completions c ON c.decision_id = d.decision_id "
                "WHERE d.now > ? AND d.allowed = 1 "
                "UNION ALL "
                "SELECT d.now, d.decision_id, d.body, c.body FROM completions c "
                "CROSS JOIN decisions d WHERE d.decision_id = c.decision_id "
                "AND c.settled_at > ? AND d.now <= ? AND d.allowed = 1"
            ),
            (since, since, since),
        )
        rows = sorted(cur.fetchall(), key=lambda row: (row[0], row[1]))
        return [
            (decision_from_json(d), None if c is None else completion_from_json(c))
            for _, _, d, c in rows
        ]

    def decision_heads(self, cur: Cursor, ids: Sequence[int]) -> dict[int, tuple[str, str, bool]]:
        found: dict[int, tuple[str, str, bool]] = {}
        for chunk in _chunks(ids):
            where, params = self._in("decision_id", chunk)
            cur.execute(
                f"SELECT decision_id, customer, feature, allowed FROM decisions WHERE {where}",
                params,
            )
            for i, customer, feature, allowed in cur.fetchall():
                found[int(i)] = (customer, feature, bool(allowed))
        return found

    def insert_usage(self, cur: Cursor, rows: Sequence[UsageEvent]) -> None:
        cur.executemany(
            self._q(f"INSERT INTO usage_events ({USAGE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"),
            [_usage_values(u) for u in rows],
        )
        cur.executemany(
            self._q(
                "INSERT INTO outbox (usage_id, claimed_by, claimed_until, attempts, digest) "
                "VALUES (?, NULL, 0, 0, ?)"
            ),
            [(u.id, u.digest()) for u in rows],
        )

    def known_usage(
        self, cur: Cursor, keys: Sequence[tuple[str, str]], decision_ids: Sequence[int]
    ) -> list[UsageEvent]:
        found: dict[int, UsageEvent] = {}
        for chunk in _chunks(keys):
            if self.skip_locked:  # PostgreSQL: two array parameters; see `_probe_each`
                pairs = "unnest(%s::text[], %s::text[]) AS v(c, k)"
                probe = _probe_each(
                    f"SELECT {_U_USAGE_COLUMNS} FROM usage_events u "
                    "WHERE u.customer = v.c AND u.key = v.k"
                )
                sql = f"SELECT u.* FROM {pairs} JOIN {probe}"
                params: list[Any] = [[c for c, _ in chunk], [k for _, k in chunk]]
            else:
                values = ", ".join(["(?, ?)"] * len(chunk))
                join = "JOIN usage_events u ON u.customer = v.c AND u.key = v.k"
                sql = f"WITH v(c, k) AS (VALUES {values}) SELECT {_U_USAGE_COLUMNS} FROM v {join}"
                params = [x for pair in chunk for x in pair]
            cur.execute(sql, params)
            found.update((int(r[0]), UsageEvent(*r)) for r in cur.fetchall())
        for chunk in _chunks(decision_ids):
            where, params = self._in("decision_id", chunk)
            cur.execute(f"SELECT {USAGE_COLUMNS} FROM usage_events WHERE {where}", params)
            found.update((int(r[0]), UsageEvent(*r)) for r in cur.fetchall())
        return list(found.values())

    def _usage(self, cur: Cursor, where: str, params: tuple[object, ...]) -> UsageEvent | None:
        cur.execute(self._q(f"SELECT {USAGE_COLUMNS} FROM usage_events WHERE {where}"), params)
        row = cur.fetchone()
        return None if row is None else UsageEvent(*row)

    def usage_for_decision(self, cur: Cursor, decision_id: int) -> UsageEvent | None:
        return self._usage(cur, "decision_id = ?", (decision_id,))

    def usage_by_id(self, cur: Cursor, usage_id: int) -> UsageEvent | None:
        return self._usage(cur, "id = ?", (usage_id,))

    def reject(self, cur: Cursor, rows: Sequence[Rejection]) -> None:
        cur.executemany(
            self._q(
                "INSERT INTO usage_rejections (id, customer, key, reason, body, at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ),
            [(r.id, r.customer, r.key, r.reason, r.body, r.at) for r in rows],
        )

    def claim(self, cur: Cursor, worker: str, now: int, lease: int, limit: int) -> list[int]:
        lock = " FOR UPDATE SKIP LOCKED" if self.skip_locked else ""
        cur.execute(
            self._q(
                "UPDATE outbox SET claimed_by = ?, claimed_until = ?, attempts = attempts + 1 "
                "WHERE usage_id IN (SELECT usage_id FROM outbox WHERE claimed_until <= ? "
                f"ORDER BY usage_id LIMIT ?{lock}) RETURNING usage_id"
            ),
            (worker, now + lease, now, limit),
        )
        return sorted(int(r[0]) for r in cur.fetchall())

    def claimable(self, cur: Cursor, now: int, limit: int, start: int) -> list[int]:
        found: list[int] = []
        for where in ("usage_id >= ?", "usage_id < ?"):
            cur.execute(
                self._q(
                    f"SELECT usage_id FROM outbox WHERE claimed_until <= ? AND {where} "
                    "ORDER BY usage_id LIMIT ?"
                ),
                (now, start, limit - len(found)),
            )
            found += [int(r[0]) for r in cur.fetchall()]
            if len(found) >= limit:
                break
        return found

    def _in(self, column: str, ids: Sequence[object]) -> tuple[str, list[Any]]:
        if self.skip_locked:  # PostgreSQL: one array parameter
            return f"{column} = ANY(%s)", [list(ids)]
        return f"{column} IN ({', '.join('?' * len(ids))})", list(ids)

    def settlement_inputs(self, cur: Cursor, usage_ids: Sequence[int]) -> list[SettlementInput]:
        if not usage_ids:
            return []
        where, params = self._in("u.id", usage_ids)
        # A subquery per event and table, each a primary-key probe: joins planned while the
        # tables were small (PostgreSQL keeps such a generic plan) would scan every decision,
        # completion and outbox entry in each batch once they have grown.
        cur.execute(
            f"SELECT {_U_USAGE_COLUMNS}, "
            "(SELECT d.body FROM decisions d WHERE d.decision_id = u.decision_id), "
            "(SELECT c.decision_id FROM completions c WHERE c.decision_id = u.decision_id), "
            "(SELECT o.digest FROM outbox o WHERE o.usage_id = u.id) "
            f"FROM usage_events u WHERE {where}",
            params,
        )
        # An event whose decision is missing is left out, as the join with decisions did.
        rows = {int(r[0]): r for r in cur.fetchall() if r[8] is not None}
        return [
            SettlementInput(
                UsageEvent(*rows[i][:8]),
                decision_from_json(rows[i][8]),
                rows[i][9] is not None,
                rows[i][10],
            )
            for i in usage_ids
            if i in rows
        ]

    def record_settlements(
        self,
        cur: Cursor,
        done: Sequence[int],
        completions: Sequence[Completion],
        monetization: Sequence[Monetization],
    ) -> None:
        cur.executemany(self._q("DELETE FROM outbox WHERE usage_id = ?"), [(i,) for i in done])
        self._insert_completions(cur, completions)
        self.insert_monetization(cur, list(monetization))

    def insert_monetization(self, cur: Cursor, rows: list[Monetization]) -> None:
        cur.executemany(
            self._q(
                f"INSERT INTO monetization_events ({MONETIZATION_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"
            ),
            [
                (
                    m.id,
                    m.usage_id,
                    m.decision_id,
                    m.customer,
                    m.layer,
                    m.units,
                    m.price_version,
                    m.price,
                    m.amount,
                    m.account_id,
                )
                for m in rows
            ],
        )

    def backlog(self, cur: Cursor) -> tuple[int, int | None]:
        event = "usage_events u ON u.id = o.usage_id"
        if self.skip_locked:  # PostgreSQL: see `_probe_each`
            event = _probe_each("SELECT u.occurred_at FROM usage_events u WHERE u.id = o.usage_id")
        cur.execute(f"SELECT COUNT(*), MIN(u.occurred_at) FROM outbox o JOIN {event}")
        count, oldest = cur.fetchone()
        return int(count), None if oldest is None else int(oldest)

    def outbox_ids(self, cur: Cursor) -> frozenset[int]:
        cur.execute("SELECT usage_id FROM outbox")
        return frozenset(int(r[0]) for r in cur.fetchall())

    def outbox_digests(self, cur: Cursor) -> dict[int, int] | None:
        cur.execute("SELECT * FROM outbox WHERE 1 = 0")  # the columns, without the catalogs
        if "digest" not in {d[0] for d in cur.description}:
            return None
        cur.execute("SELECT usage_id, digest FROM outbox")
        return {int(i): int(digest) for i, digest in cur.fetchall()}

    def all_usage(self, cur: Cursor) -> Iterator[UsageEvent]:
        cur.execute(f"SELECT {USAGE_COLUMNS} FROM usage_events ORDER BY id")
        return map(UsageEvent._make, cur.fetchall())

    def all_monetization(self, cur: Cursor) -> Iterator[Monetization]:
        cur.execute(f"SELECT {MONETIZATION_COLUMNS} FROM monetization_events ORDER BY id")
        return map(Monetization._make, cur.fetchall())

    def all_rejections(self, cur: Cursor) -> Iterator[Rejection]:
        cur.execute("SELECT id, customer, key, reason, body, at FROM usage_rejections ORDER BY id")
        return (Rejection(*row) for row in cur.fetchall())

    def rejection_count(self, cur: Cursor) -> int:
        cur.execute("SELECT COUNT(*) FROM usage_rejections")
        return int(cur.fetchone()[0])

    def all_completions(self, cur: Cursor) -> Iterator[Completion]:
        cur.execute("SELECT body FROM completions ORDER BY decision_id")
        return (completion_from_json(row[0]) for row in cur.fetchall())

    def all_decisions(self, cur: Cursor) -> Iterator[Decision]:
        cur.execute("SELECT body FROM decisions ORDER BY decision_id")
        return (decision_from_json(row[0]) for row in cur.fetchall())

    def all_allocations(self, cur: Cursor) -> Iterator[Allocation]:
        cur.execute(
            "SELECT decision_id, customer, feature, units, allowed, rooms, took FROM decisions"
        )
        return (
            Allocation(i, c, f, u, bool(a), _numbers(r), _numbers(t)) for i, c, f, u, a, r, t in cur
        )

    def all_completion_keys(self, cur: Cursor) -> list[tuple[int, int, tuple[int, ...]]]:
        cur.execute("SELECT decision_id, usage_id, transfers FROM completions")
        return [(d, u, _numbers(t)) for d, u, t in cur]


def _usage_values(u: UsageEvent) -> tuple[int | str, ...]:
    return (
        u.id,
        u.customer,
        u.key,
        u.feature,
        u.units,
        u.occurred_at,
        u.decision_id,
        u.received_at,
    )


def _probe_each(row_of: str) -> str:
    """PostgreSQL: a join's inner side as an index probe per outer row, `LATERAL (...) u ON
    true`, for a `row_of` that names at most one row (LIMIT 1 keeps the planner from flattening
    it back into a join). A join planned while the tables were small, which is the plan the
    server caches for a prepared statement, hashes the whole inner table on every run once the
    table has grown."""
    return f"LATERAL ({row_of} LIMIT 1) u ON true"


def _chunks(items: Sequence[Any], size: int = 5000) -> Iterator[Sequence[Any]]:
    """`items` in slices that keep a statement under SQLite's host parameter limit."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _outbox_keeps_digests(tables: SqlTables, cur: Cursor) -> None:
    """Layout 2: the outbox rebuilt with each entry's digest, computed from its usage event as
    the database holds it now (what is queued at the upgrade is trusted as it stands). A new
    table rather than a new column, so that the column is NOT NULL on SQLite too: a process
    still on layout 1 cannot queue an event without a digest."""
    cur.execute(
        """CREATE TABLE outbox_2 (
        usage_id BIGINT PRIMARY KEY, claimed_by TEXT, claimed_until BIGINT NOT NULL,
        attempts BIGINT NOT NULL, digest BIGINT NOT NULL)"""
    )
    cur.execute(
        f"SELECT o.usage_id, o.claimed_by, o.claimed_until, o.attempts, {_U_USAGE_COLUMNS} "
        "FROM outbox o LEFT JOIN usage_events u ON u.id = o.usage_id"
    )
    entries = []
    for usage_id, claimed_by, until, attempts, *usage in cur.fetchall():
        # An entry whose event is gone keeps digest 0, which no event has: the audit still
        # names it, settlement still skips it.
        digest = 0 if usage[0] is None else UsageEvent(*usage).digest()
        entries.append((usage_id, claimed_by, until, attempts, digest))
    cur.executemany(
        tables._q(
            "INSERT INTO outbox_2 (usage_id, claimed_by, claimed_until, attempts, digest) "
            "VALUES (?, ?, ?, ?, ?)"
        ),
        entries,
    )
    cur.execute("DROP TABLE outbox")
    cur.execute("ALTER TABLE outbox_2 RENAME TO outbox")


def _completions_keep_settled_at(tables: SqlTables, cur: Cursor) -> None:
    """Layout 3: completions keep the time they were settled at, so that a meter restarted on
    the database can rebuild its windows (0 for those settled before: their time is unknown)."""
    cur.execute("ALTER TABLE completions ADD COLUMN settled_at BIGINT NOT NULL DEFAULT 0")


_BUILT_ALONE = (
    ("decisions_by_now", "decisions (now)"),
    ("completions_by_settled_at", "completions (settled_at)"),
)
"""Layout 4's indexes: (name, table and columns)."""


def _index_state(store: SqlStore, name: str) -> bool | None:
    """PostgreSQL: whether index `name` is valid (None: there is none)."""
    sql = "SELECT (SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s))"
    [[valid]] = store.query(sql, [name])
    return None if valid is None else bool(valid)


def _history_is_indexed(tables: SqlTables, cur: Cursor) -> None:
    """Layout 4: a meter opening reads the decisions made or settled within its windows'
    horizon (`window_history`) through these, instead of every decision the database holds.
    On PostgreSQL an index on a table that has rows is built after this transaction
    (`SqlTables.finish_setup`); one on an empty table (a new database) costs nothing here."""
    for name, on in _BUILT_ALONE:
        table = on.split()[0]
        if tables.skip_locked:
            cur.execute(f"SELECT EXISTS (SELECT 1 FROM {table})")
            if cur.fetchone()[0]:
                continue
        cur.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {on}")


_MIGRATIONS: dict[int, Callable[[SqlTables, Cursor], None]] = {
    2: _outbox_keeps_digests,
    3: _completions_keep_settled_at,
    4: _history_is_indexed,
}


def tables_for(store: Store) -> MeterTables:
    """The tables that live with `store`: in its database, or in memory."""
    from ledger.store.memory import MemoryStore

    if isinstance(store, MemoryStore):
        # The tables live as long as the store, as they would in its database: a Meter made
        # again over the same store (a restarted process) finds them.
        found = store.extensions.get("meter_tables")
        if not isinstance(found, MemoryTables):
            found = store.extensions["meter_tables"] = MemoryTables()
        return found
    if isinstance(store, SqlStore):
        return SqlTables(store.placeholder, skip_locked=store.placeholder == "%s")
    raise TypeError(f"no metering tables for {type(store).__name__}")
