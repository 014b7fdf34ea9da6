"""API keys and customer read tokens: who may call what.

A key is `tg_` and 43 URL-safe characters (256 random bits from `secrets`). Only its SHA-256
is stored, as a `meter_records` row of kind `api_key` (key: the hex digest; body: JSON with the
role, the customer for a read token, and when it was made), in the same database as the ledger,
so every API process sharing the database knows every key. A random 256-bit key needs no slow
hash: nobody can guess a preimage of its SHA-256.

Roles (see README, "HTTP API"):

- `service`: decide, complete, report usage; read decisions and balances.
- `admin`: plans, price books, organisations, customers, grants, purchases, top-ups, keys,
  settlement runs; reads everything an auditor reads.
- `auditor`: read-only: plans, price books, customers, balances, history, decisions, the
  settlement backlog and the audit report.
- `customer`: a read token scoped to one customer: that customer's record, balances and history.

Lookups are served from a cache of the key rows; an unknown key re-reads the rows (at most once
per `refresh_interval_s`), so a key made by `tollgate keys create` while the server runs is
known within that interval, and a flood of bad keys costs at most one read per interval. The
cache is also re-read when it is older than `max_age_s`, so a key revoked by `tollgate keys
revoke` (its row gets `revoked_at`; it is never deleted, so listings keep it) stops working on
every server within that time.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

from ledger.metering import Meter

KEY_KIND = "api_key"
KEY_PREFIX = "tg_"
KEY_LENGTH_MAX = 128
"""A presented key longer than this is refused before it is hashed."""
REFRESH_INTERVAL_S = 1.0
MAX_AGE_S = 5.0
"""A revoked key stops working within this many seconds on every server."""
KEY_ID_LENGTH = 12


class Role(StrEnum):
    SERVICE = "service"
    ADMIN = "admin"
    AUDITOR = "auditor"
    CUSTOMER = "customer"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a valid key belongs to. `key_id` (the first 12 hex digits of the key's hash) names
    the key in logs and listings without revealing it; `customer` is set for read tokens only."""

    key_id: str
    role: Role
    customer: str | None = None


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A stored key as listings show it (never the key itself)."""

    key_id: str
    role: Role
    customer: str | None
    created_at: int
    revoked_at: int | None


class UnknownKeyError(LookupError):
    """No stored key, or more than one, has this key id."""


def _record(digest: str, body: str) -> KeyRecord:
    data = json.loads(body)
    return KeyRecord(
        digest[:KEY_ID_LENGTH],
        Role(data["role"]),
        data.get("customer"),
        data["created_at"],
        data.get("revoked_at"),
    )


def _principal(digest: str, body: str) -> Principal | None:
    """The key's principal, or None for a revoked key."""
    record = _record(digest, body)
    if record.revoked_at is not None:
        return None
    return Principal(record.key_id, record.role, record.customer)


def check_role(role: str, customer: str | None) -> Role:
    """The role, if `customer` is given exactly when the role is `customer`; else ValueError."""
    parsed = Role(role)
    if parsed is Role.CUSTOMER and not customer:
        raise ValueError("a customer read token needs the customer it may read")
    if parsed is not Role.CUSTOMER and customer is not None:
        raise ValueError(f"a {parsed.value} key is not scoped to a customer; omit the customer")
    return parsed


def create_api_key(meter: Meter, role: str, now: int, customer: str | None = None) -> str:
    """Make a key for `role` (a read token when role is "customer"), store its hash, and return
    the key itself: the only time it is ever shown. A customer must exist for its token."""
    parsed = check_role(role, customer)
    if customer is not None:
        meter.balances(customer)  # raises UnknownCustomerError for an unknown customer
    key = new_key()
    digest = key_hash(key)
    body = json.dumps(
        {"role": parsed.value, "customer": customer, "created_at": now}, separators=(",", ":")
    )
    meter.tables.write(
        meter.store, now, lambda cur: meter.tables.put_record(cur, KEY_KIND, digest, body)
    )
    return key


def list_api_keys(meter: Meter) -> list[KeyRecord]:
    """Every stored key, revoked ones included, oldest first."""
    rows: Iterable[tuple[str, str]] = meter.tables.read(
        meter.store, lambda cur: meter.tables.records(cur, KEY_KIND)
    )
    return sorted((_record(d, b) for d, b in rows), key=lambda r: (r.created_at, r.key_id))


def revoke_api_key(meter: Meter, key_id: str, now: int) -> KeyRecord:
    """Revoke the key whose id (the first 12 hex digits of its hash, as listings show) is
    `key_id`; returns its record. Revoking a revoked key changes nothing. Raises
    UnknownKeyError when no key, or more than one, has that id."""
    if len(key_id) != KEY_ID_LENGTH or any(c not in "0123456789abcdef" for c in key_id):
        raise UnknownKeyError(f"a key id is {KEY_ID_LENGTH} hex digits, not {key_id!r}")
    rows: list[tuple[str, str]] = meter.tables.read(
        meter.store, lambda cur: meter.tables.records(cur, KEY_KIND)
    )
    found = [(digest, body) for digest, body in rows if digest.startswith(key_id)]
    if len(found) != 1:
        problem = "no key has" if not found else f"{len(found)} keys have"
        raise UnknownKeyError(f"{problem} the id {key_id}; see `tollgate keys list`")
    [(digest, body)] = found
    data = json.loads(body)
    if data.get("revoked_at") is None:
        data["revoked_at"] = now
        revoked = json.dumps(data, separators=(",", ":"))
        meter.tables.write(
            meter.store, now, lambda cur: meter.tables.put_record(cur, KEY_KIND, digest, revoked)
        )
        body = revoked
    return _record(digest, body)


class Keyring:
    """The known keys by hash, read from the meter's tables and refreshed on a miss."""

    def __init__(
        self,
        meter: Meter,
        *,
        refresh_interval_s: float = REFRESH_INTERVAL_S,
        max_age_s: float = MAX_AGE_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._meter = meter
        self._interval = refresh_interval_s
        self._max_age = max_age_s
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._known: dict[str, Principal] = {}
        self._refreshed_at: float | None = None
        self.refresh()

    def refresh(self) -> None:
        tables = self._meter.tables
        rows: Iterable[tuple[str, str]] = tables.read(
            self._meter.store, lambda cur: tables.records(cur, KEY_KIND)
        )
        principals = ((digest, _principal(digest, body)) for digest, body in rows)
        known = {digest: p for digest, p in principals if p is not None}
        with self._lock:
            self._known = known
            self._refreshed_at = self._monotonic()

    def add(self, key: str, principal: Principal) -> None:
        """Know a key made in this process at once (its row is already written)."""
        with self._lock:
            self._known[key_hash(key)] = principal

    def lookup(self, key: str) -> Principal | None:
        """The key's principal, or None for an unknown or malformed key."""
        if not key.startswith(KEY_PREFIX) or len(key) > KEY_LENGTH_MAX or not key.isascii():
            return None
        digest = key_hash(key)
        if self._age() >= self._max_age:
            self.refresh()  # a key revoked elsewhere stops working here within max_age_s
        found = self._known.get(digest)
        if found is None and self._age() >= self._interval:
            self.refresh()
            found = self._known.get(digest)
        return found

    def _age(self) -> float:
        """Seconds since the keys were last read (infinite before the first read)."""
        with self._lock:
            last = self._refreshed_at
        return float("inf") if last is None else self._monotonic() - last
