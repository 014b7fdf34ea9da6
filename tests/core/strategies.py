"""Shared Hypothesis strategies for the ledger core.

Every event starts valid and, now and then, gets exactly one defect (a zero or reserved id, a
reserved flag bit, an arbitrary flag combination, a missing account, a stray timeout, ...), so
that both the accepting paths and every rejection are common. Small id pools make ids repeat;
posts and voids mostly name a pending transfer drawn earlier in the example; amounts cluster near
zero and near AMOUNT_MAX so that both the ordinary paths and every overflow are reached; time
moves in whole seconds plus a few nanoseconds so that pending transfers expire exactly at, just
before and just after their deadlines.

A weighted choice is one `sampled_from` over a tuple in which common values repeat: the cheapest
draw there is, which keeps 10,000 examples well inside the time budget.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st

from ledger import (
    AMOUNT_MAX,
    ID_MAX,
    NS_PER_SECOND,
    Account,
    AccountFlags,
    Ledger,
    PendingStatus,
    Transfer,
    TransferFlags,
)
from ledger.core.limits import TIMEOUT_MAX_SECONDS
from specs import ledger as spec

CI_MAX_EXAMPLES = 100  # the "ci" profile's base budget (tests/conftest.py)


def scaled(ci_examples: int) -> int:
    """`ci_examples` under the "ci" profile, proportionally fewer under "dev"."""
    return max(1, ci_examples * settings.default.max_examples // CI_MAX_EXAMPLES)


Event = Account | Transfer
Batch = tuple[list[Event], int]

LINKED = int(TransferFlags.LINKED)
PENDING = int(TransferFlags.PENDING)
POST = int(TransferFlags.POST_PENDING)
VOID = int(TransferFlags.VOID_PENDING)
BAL_DR = int(TransferFlags.BALANCING_DEBIT)
BAL_CR = int(TransferFlags.BALANCING_CREDIT)
DR_GUARD, CR_GUARD, HISTORY, CLOSED = 1 << 1, 1 << 2, 1 << 3, 1 << 4

ACCOUNT_IDS = (1, 2, 3, 4)
MISSING_ACCOUNT_ID = 9  # never created: a transfer naming it fails with *_NOT_FOUND
TRANSFER_IDS = tuple(range(1, 25))

# In the late epoch a pending transfer with the largest timeout overflows the timestamp column,
# and one with a timeout just below that threshold is valid and never expires in an example.
LATE_EPOCH_NS = 5 * 10**18
TIMEOUT_NEAR_MAX_SECONDS = 4_000_000_000

BIG_AMOUNTS = (AMOUNT_MAX, AMOUNT_MAX - 1, AMOUNT_MAX - 7, AMOUNT_MAX // 2 + 1)


def _weighted(*pairs: tuple[object, int]) -> st.SearchStrategy[Any]:
    return st.sampled_from([value for value, weight in pairs for _ in range(weight)])


# --- accounts ---------------------------------------------------------------------------------

_account_id = st.sampled_from(ACCOUNT_IDS)
_account_ledger = _weighted((1, 9), (2, 1))
_code = _weighted((1, 4), (2, 1))
_guard = _weighted((0, 6), (DR_GUARD, 2), (CR_GUARD, 1))
_history = st.sampled_from((0, HISTORY))
_closed = _weighted((0, 12), (CLOSED, 1))
_user_data = _weighted((0, 3), (1, 1))
_ACCOUNT_DEFECT_NAMES = (
    "id",
    "id_max",
    "ledger",
    "code",
    "reserved",
    "timestamp",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
    "both_guards",
)
_account_defect = _weighted((None, 100), *[(name, 1) for name in _ACCOUNT_DEFECT_NAMES])
_setup_account_defect = _weighted((None, 400), *[(name, 1) for name in _ACCOUNT_DEFECT_NAMES])
_ACCOUNT_DEFECTS: dict[str, dict[str, int]] = {
    "id": {"id": 0},
    "id_max": {"id": ID_MAX},
    "ledger": {"ledger": 0},
    "code": {"code": 0},
    "timestamp": {"timestamp": 1},
    "debits_pending": {"debits_pending": 1},
    "debits_posted": {"debits_posted": 1},
    "credits_pending": {"credits_pending": 1},
    "credits_posted": {"credits_posted": 1},
}


@st.composite
def accounts(draw: st.DrawFn, setup: bool = False) -> Account:
    """An account event (LINKED clear), now and then with one defect (rarely in `setup`)."""
    account = Account(
        id=draw(_account_id),
        ledger=draw(_account_ledger),
        code=draw(_code),
        flags=draw(_guard) | draw(_history) | draw(_closed),
        user_data=draw(_user_data),
    )
    defect = draw(_setup_account_defect if setup else _account_defect)
    if defect == "reserved":
        return replace(account, flags=account.flags | 1 << draw(st.integers(5, 15)))
    if defect == "both_guards":
        return replace(account, flags=account.flags | DR_GUARD | CR_GUARD)
    return account if defect is None else replace(account, **_ACCOUNT_DEFECTS[defect])


# --- transfers --------------------------------------------------------------------------------

_transfer_id = st.sampled_from(TRANSFER_IDS)
_kind = _weighted(("single", 4), ("pending", 4), ("post", 3), ("void", 2))
_account_pair = st.sampled_from([(d, c) for d in ACCOUNT_IDS for c in ACCOUNT_IDS if d != c])
_small = (1, 2, 3, 5, 8, 10, 20, 50)
_amount = _weighted(*[(a, 4) for a in _small], *[(a, 1) for a in BIG_AMOUNTS])
_balancing = _weighted((0, 12), (BAL_DR, 2), (BAL_CR, 2), (BAL_DR | BAL_CR, 1))
_transfer_ledger = _weighted((1, 12), (2, 1))
_timeout = _weighted(
    (0, 4), (1, 4), (2, 3), (3, 2), (TIMEOUT_MAX_SECONDS, 1), (TIMEOUT_NEAR_MAX_SECONDS, 1)
)
_names_known_pending = _weighted((True, 6), (False, 1))
_inherit = _weighted(("zero", 14), ("same", 2), ("other", 1))
_post_amount = _weighted(("full", 4), ("partial", 4), ("over", 1), ("max", 1))
_void_amount = _weighted(("zero", 6), ("full", 2), ("other", 1))
_transfer_defect = _weighted(
    (None, 60),
    ("id", 1),
    ("id_max", 1),
    ("timestamp", 1),
    ("reserved", 1),
    ("flags", 4),
    ("debit_zero", 1),
    ("credit_zero", 1),
    ("debit_max", 1),
    ("credit_max", 1),
    ("same_accounts", 1),
    ("missing_debit", 2),
    ("missing_credit", 2),
    ("pending_id", 2),
    ("timeout", 1),
    ("amount", 1),
    ("ledger", 1),
    ("code", 1),
)


def _pending_of(seen: list[Event], pending_id: int) -> Transfer | None:
    """The last pending transfer with this id drawn so far in the example, if any."""
    for event in reversed(seen):
        if type(event) is Transfer and event.id == pending_id and event.flags & PENDING:
            return event
    return None


def _resolving(draw: st.DrawFn, kind: str, transfer_id: int, seen: list[Event]) -> Transfer:
    pending_ids = sorted({e.id for e in seen if type(e) is Transfer and e.flags & PENDING})
    known = pending_ids and draw(_names_known_pending)
    pending_id = draw(st.sampled_from(pending_ids if known else TRANSFER_IDS))
    p = _pending_of(seen, pending_id) or Transfer(
        id=pending_id, debit_account_id=1, credit_account_id=2, amount=10, ledger=1, code=1
    )

    def inherit(name: str, other: int) -> int:
        choice = draw(_inherit)
        return 0 if choice == "zero" else getattr(p, name) if choice == "same" else other

    if kind == "post":
        amounts = {
            "full": p.amount,
            "partial": max(1, p.amount // 2),
            "over": p.amount + 1,
            "max": AMOUNT_MAX,
        }
        amount = min(AMOUNT_MAX, amounts[draw(_post_amount)])
    else:
        amount = {"zero": 0, "full": p.amount, "other": p.amount + 1}[draw(_void_amount)]
    return Transfer(
        id=transfer_id,
        debit_account_id=inherit("debit_account_id", p.credit_account_id),
        credit_account_id=inherit("credit_account_id", p.debit_account_id),
        amount=min(AMOUNT_MAX, amount),
        pending_id=pending_id,
        ledger=inherit("ledger", p.ledger % 2 + 1),
        code=inherit("code", p.code % 2 + 1),
        user_data=draw(_user_data),
        flags=POST if kind == "post" else VOID,
    )


_TRANSFER_DEFECTS: dict[str, dict[str, int]] = {
    "id": {"id": 0},
    "id_max": {"id": ID_MAX},
    "timestamp": {"timestamp": 1},
    "debit_zero": {"debit_account_id": 0},
    "credit_zero": {"credit_account_id": 0},
    "debit_max": {"debit_account_id": ID_MAX},
    "credit_max": {"credit_account_id": ID_MAX},
    "missing_debit": {"debit_account_id": MISSING_ACCOUNT_ID},
    "missing_credit": {"credit_account_id": MISSING_ACCOUNT_ID},
    "amount": {"amount": 0},
    "ledger": {"ledger": 0},
    "code": {"code": 0},
}


def _with_defect(draw: st.DrawFn, t: Transfer, defect: str) -> Transfer:
    if defect == "reserved":
        return replace(t, flags=t.flags | 1 << draw(st.integers(6, 15)))
    if defect == "flags":  # any combination of the known bits, mostly invalid ones
        return replace(t, flags=draw(st.integers(0, 63)) & ~LINKED)
    if defect == "same_accounts":
        same = t.debit_account_id or 1
        return replace(t, debit_account_id=same, credit_account_id=same)
    if defect == "pending_id":
        return replace(t, pending_id=draw(st.sampled_from((0, 1, ID_MAX, t.id))))
    if defect == "timeout":
        return replace(t, timeout=0 if t.flags & PENDING else 1)
    return replace(t, **_TRANSFER_DEFECTS[defect])


@st.composite
def transfers(draw: st.DrawFn, seen: list[Event] | None = None) -> Transfer:
    """A transfer event of any kind (LINKED clear), now and then with one defect. Posts and
    voids mostly name a pending transfer among `seen`, the events drawn before."""
    kind = draw(_kind)
    transfer_id = draw(_transfer_id)
    if kind in ("post", "void"):
        t = _resolving(draw, kind, transfer_id, seen or [])
    else:
        debit, credit = draw(_account_pair)
        pending = kind == "pending"
        t = Transfer(
            id=transfer_id,
            debit_account_id=debit,
            credit_account_id=credit,
            amount=draw(_amount),
            timeout=draw(_timeout) if pending else 0,
            ledger=draw(_transfer_ledger),
            code=draw(_code),
            user_data=draw(_user_data),
            flags=(PENDING if pending else 0) | draw(_balancing),
        )
    defect = draw(_transfer_defect)
    return t if defect is None else _with_defect(draw, t, defect)


# --- replays ----------------------------------------------------------------------------------

_TRANSFER_FIELDS = (
    "flags",
    "pending_id",
    "timeout",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "user_data",
    "ledger",
    "code",
)
_ACCOUNT_FIELDS = ("flags", "user_data", "ledger", "code")
_small_value = st.sampled_from((0, 1, 2, 3))


def altered(draw: st.DrawFn, event: Event) -> Event:
    """`event` with one field changed (a replay with a different body)."""
    names = _ACCOUNT_FIELDS if type(event) is Account else _TRANSFER_FIELDS
    name = draw(st.sampled_from(names))
    if name == "flags":  # flip one known bit other than LINKED
        return replace(event, flags=event.flags ^ 1 << draw(st.integers(1, 4)))
    if name == "amount":
        amount = event.amount + draw(st.sampled_from((-1, 1)))
        return replace(event, amount=min(AMOUNT_MAX, max(0, amount)))
    return replace(event, **{name: draw(_small_value)})


# --- batches and scenarios --------------------------------------------------------------------

_event_choice = _weighted(("transfer", 14), ("account", 2), ("replay", 2), ("altered", 2))
_linked = _weighted((0, 6), (LINKED, 1))
_as_enum = _weighted((False, 9), (True, 1))
_setup_size = _weighted((4, 16), (3, 3), (0, 1))


@st.composite
def batch_events(
    draw: st.DrawFn, seen: list[Event], first: bool = False, max_size: int = 7
) -> list[Event]:
    """One batch; about one event in seven carries LINKED (chains, closed and left open).
    `seen` collects every event of the example, for posts, voids and replays."""
    events: list[Event] = []
    setup = draw(_setup_size) if first else 0  # the first batch opens accounts 1, 2, ...
    for index in range(setup + draw(st.integers(0, max_size - setup))):
        choice = "setup" if index < setup else draw(_event_choice)
        if choice == "setup":
            event = replace(draw(accounts(setup=True)), id=ACCOUNT_IDS[index])
        elif choice in ("replay", "altered") and seen:
            event = draw(st.sampled_from(seen))
            event = altered(draw, event) if choice == "altered" else event
        elif choice == "account":
            event = draw(accounts())
        else:
            event = draw(transfers(seen))
        flags = event.flags & ~LINKED | draw(_linked)
        if draw(_as_enum):  # the API takes IntFlag values too: they take the validator's slow path
            flags = (TransferFlags if type(event) is Transfer else AccountFlags)(flags)
        event = replace(event, flags=flags)
        seen.append(event)
        events.append(event)
    return events


_epoch = _weighted((0, 3), (LATE_EPOCH_NS, 1))
_start_seconds = st.integers(0, 3)
_step_seconds = _weighted((0, 2), (1, 3), (2, 1), (3, 1), (4, 1))
_step_offset_ns = _weighted((0, 4), (1, 1), (2, 1), (-1, 1), (-2, 1), (-3 * NS_PER_SECOND, 1))


@st.composite
def scenarios(
    draw: st.DrawFn, max_batches: int = 4, epoch: st.SearchStrategy[int] | None = None
) -> list[Batch]:
    """Batches with their `now`: it moves by 0-4 s and a few ns, now and then backwards."""
    now = draw(epoch if epoch is not None else _epoch) + draw(_start_seconds) * NS_PER_SECOND
    seen: list[Event] = []
    batches = []
    for index in range(draw(st.integers(1, max_batches))):
        if index:
            now = max(0, now + draw(_step_seconds) * NS_PER_SECOND + draw(_step_offset_ns))
        batches.append((draw(batch_events(seen, first=index == 0)), now))
    return batches


_timing_offset_ns = st.integers(-8, 8)
_timing_timeout = st.integers(1, 3)
_timing_step_seconds = st.integers(0, 4)
_resolution = _weighted(("post", 3), ("void", 2), ("filler", 1))


@st.composite
def two_phase_scenarios(draw: st.DrawFn) -> list[Batch]:
    """Pending transfers with timeouts of 1-3 s, then batches of posts and voids whose `now`
    lands a few nanoseconds around their deadlines, so that deadlines fall before, at and after
    events in the middle of a batch."""
    now = draw(_epoch) + NS_PER_SECOND
    opening = [Account(id=i, ledger=1, code=1) for i in ACCOUNT_IDS]
    pendings = []
    for index in range(draw(st.integers(1, 6))):
        debit, credit = draw(_account_pair)
        pendings.append(
            Transfer(
                id=index + 1,
                debit_account_id=debit,
                credit_account_id=credit,
                amount=draw(st.sampled_from(_small)),
                timeout=draw(_timing_timeout),
                ledger=1,
                code=1,
                flags=PENDING,
            )
        )
    batches: list[Batch] = [(opening, now), (pendings, now + NS_PER_SECOND)]
    now += NS_PER_SECOND
    next_id = 100
    for _ in range(draw(st.integers(1, 3))):
        now += draw(_timing_step_seconds) * NS_PER_SECOND + draw(_timing_offset_ns)
        events: list[Event] = []
        for _ in range(draw(st.integers(1, 7))):
            kind = draw(_resolution)
            p = draw(st.sampled_from(pendings))
            next_id += 1
            if kind == "filler":
                events.append(Account(id=next_id, ledger=1, code=1))
            else:
                amount = p.amount if kind == "post" else 0
                events.append(
                    Transfer(
                        id=next_id,
                        pending_id=p.id,
                        amount=amount,
                        flags=POST if kind == "post" else VOID,
                    )
                )
        batches.append((events, max(0, now)))
    return batches


BANK = 9  # in balancing scenarios: an unguarded account that funds the others
_balance_guard = _weighted((0, 1), (DR_GUARD, 2), (CR_GUARD, 2))
_balance_kind = _weighted(
    ("credit", 3),
    ("debit", 3),
    ("hold_debit", 2),
    ("hold_credit", 2),
    ("balancing", 6),
    ("resolve", 2),
    ("replay", 2),
)
_balancing_flags = _weighted((BAL_DR, 3), (BAL_CR, 3), (BAL_DR | BAL_CR, 1))
_balance_amount = _weighted((1, 1), (5, 2), (10, 2), (20, 2), (40, 1), (AMOUNT_MAX, 1))


def _balance_event(draw: st.DrawFn, kind: str, transfer_id: int, seen: list[Transfer]) -> Event:
    account = draw(_account_id)
    amount = draw(_balance_amount if kind == "balancing" else st.sampled_from(_small[:6]))
    if kind == "replay" and seen:
        t = draw(st.sampled_from(seen))
        return replace(t, amount=max(1, min(AMOUNT_MAX, t.amount + draw(st.integers(-3, 3)))))
    if kind == "resolve" and any(t.flags & PENDING for t in seen):
        p = draw(st.sampled_from([t for t in seen if t.flags & PENDING]))
        flags = draw(st.sampled_from((POST, VOID)))
        return Transfer(
            id=transfer_id, pending_id=p.id, amount=p.amount if flags == POST else 0, flags=flags
        )
    debit, credit = {
        "credit": (BANK, account),
        "hold_credit": (BANK, account),
        "debit": (account, BANK),
        "hold_debit": (account, BANK),
    }.get(kind, draw(_account_pair))
    flags = PENDING if kind.startswith("hold") else 0
    if kind == "balancing":
        flags = draw(_balancing_flags) | draw(st.sampled_from((0, 0, PENDING)))
    return Transfer(
        id=transfer_id,
        debit_account_id=debit,
        credit_account_id=credit,
        amount=amount,
        ledger=1,
        code=1,
        flags=flags,
    )


@st.composite
def balancing_scenarios(draw: st.DrawFn) -> list[Batch]:
    """Guarded accounts funded from a bank, with holds both ways, then balancing transfers
    that ask for more or less than is available, resolutions of the holds and replays of the
    balancing transfers with larger and smaller maxima."""
    now = NS_PER_SECOND
    opening = [Account(id=BANK, ledger=1, code=1)] + [
        Account(id=i, ledger=1, code=1, flags=draw(_balance_guard) | draw(_history))
        for i in ACCOUNT_IDS
    ]
    batches: list[Batch] = [(opening, now)]
    seen: list[Transfer] = []
    next_id = 0
    for _ in range(draw(st.integers(1, 4))):
        now += draw(_step_seconds) * NS_PER_SECOND
        events: list[Event] = []
        for _ in range(draw(st.integers(1, 7))):
            next_id += 1
            event = _balance_event(draw, draw(_balance_kind), next_id, seen)
            if type(event) is Transfer and event.flags & (BAL_DR | BAL_CR | PENDING):
                seen.append(event)
            events.append(event)
        batches.append((events, now))
    return batches


# --- the engine's state as plain data ---------------------------------------------------------


def snapshot_fields(record: Any) -> dict[str, int]:
    """A record's fields as a plain dict of ints (IntFlag values become plain ints)."""
    return {f.name: int(getattr(record, f.name)) for f in fields(record)}


def engine_view(ledger: Ledger, history: bool = False) -> dict[str, Any]:
    """Everything the engine shows through its public reads, as plain dicts, lists and ints:
    the engine side of the differential test's common form (with `history`, also every
    account's balance history, which the reference does not keep)."""
    accounts = {a.id: snapshot_fields(a) for a in ledger.accounts()}
    transfers = {t.id: snapshot_fields(t) for t in ledger.transfers()}
    statuses = {i: int(ledger.pending_status(i)) for i in transfers}
    view: dict[str, Any] = {
        "accounts": accounts,
        "transfers": transfers,
        "pending_status": {i: s for i, s in statuses.items() if s != PendingStatus.NONE},
        "failed": sorted(ledger.failed_ids()),
        "timestamp": ledger.timestamp,
        "expiries": [(e.pending_id, e.amount, e.timestamp) for e in ledger.expiries()],
        "ledger_totals": {
            ledger_id: sums
            for ledger_id, sums in spec.ledger_totals(ledger.accounts()).items()
            if any(sums)
        },
    }
    if history:
        view["history"] = {i: [snapshot_fields(h) for h in ledger.history(i)] for i in accounts}
    return view
