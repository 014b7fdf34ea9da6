"""Deterministic ids. Every account and transfer the engine creates has an id derived from the
names that identify it, so a retry (after a crash, a redelivery, a second API node) names the
same transfer and the ledger's idempotency (L4) turns it into a no-op instead of a second debit."""

from __future__ import annotations

import hashlib

from ledger.core.limits import ID_MAX

_BLAKE2B = hashlib.blake2b(digest_size=8, person=b"tollgate-id")


def derive_id(*parts: str | int) -> int:
    """A 63-bit id from the parts, never 0 and never ID_MAX; collisions are ~2^-63 per pair.
    The tuple's repr quotes and escapes every string, so no two different part lists hash
    the same bytes."""
    h = _BLAKE2B.copy()  # cheaper than a new hash with its parameters
    h.update(repr(parts).encode())
    digest = h.digest()
    value = int.from_bytes(digest, "big") & ID_MAX
    return value if 0 < value < ID_MAX else 1 + value % (ID_MAX - 1)
