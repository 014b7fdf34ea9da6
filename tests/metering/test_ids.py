"""Derived ids are stored: every transfer, usage event and monetization event a database holds
is named by one. A change to how they are derived would orphan every database written before,
so the derivation is pinned here: against its definition on any parts, and on two literal ids."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from ledger.core.limits import ID_MAX
from ledger.metering.ids import derive_id

PARTS = st.lists(st.one_of(st.text(), st.integers(-(2**70), 2**70)), min_size=1, max_size=4)


def defined(*parts: str | int) -> int:
    """The derivation as documented: blake2b-64 of the parts' repr, personalised."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8, person=b"tollgate-id").digest()
    value = int.from_bytes(digest, "big") & ID_MAX
    return value if 0 < value < ID_MAX else 1 + value % (ID_MAX - 1)


@given(PARTS)
def test_an_id_is_its_definition(parts: list[str | int]) -> None:
    assert derive_id(*parts) == defined(*parts)
    assert 0 < derive_id(*parts) < ID_MAX


def test_ids_written_by_earlier_versions_are_derived_again() -> None:
    assert derive_id("usage", "carl", "c1-use") == 6730905588225719152
    assert derive_id("monetization", 1234567890123456789, "credits") == 1791485844662960738
