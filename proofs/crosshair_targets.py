"""CrossHair contracts on the ledger's pure step functions (a bounded bug finder, not a proof).

Each target is a small, top-level, loop-free, pure wrapper with PEP 316 docstring contracts. It
takes flat int/bool arguments (CrossHair makes them symbolic), builds a tiny two-account ledger
from them, and calls the REAL code: `ledger.core.kernel` with `CONCRETE` ops (on `FlatMap`s, see
that class for why not `TotalMap`, which has its own target), or the fast engine's pure helpers in
`ledger.core.engine`, or `TotalMap` itself, or the waterfall's allocation
(`ledger.metering.allocate.allocate_units` and `fill_units`, over three layers). Postconditions
are stated with the predicates of `specs.ledger` (no_overdraft, totals_in_bounds,
transfer_accepted, moved_amount, transfer_effect) and `specs.metering` (parts_within_rooms,
waterfall_order, allocation_complete, fill_complete), never by re-running the code under test.

Two kinds of `post:` line, both read by proofs/crosshair_check.py:
- `post: <expr>  # <name>: <requirement ids>` is one contract (used by the engine helpers);
- `post: all_hold(<TABLE>, __return__)` checks every `Property` of a module-level table on each
  path. The kernel targets use it: CrossHair runs one search per `post:` line, so five separate
  posts cost five searches, and at the same CPU budget one shared search over their conjunction
  found seeded bugs that five separate 40-iteration searches missed (see proofs/MUTATION.md). The
  checker still reports one outcome per property and names the violated ones by re-running the
  counterexample concretely.

Budgets: each target has a `# crosshair: max_iterations=N` directive, so a run is bounded by a
count of paths (reproducible), with CPU timeouts only as a cap. Account, ledger, code and transfer
ids are constants: a symbolic dict key would be realised when hashed, costing paths for nothing.
Preconditions are the invariants themselves (L1 via `no_overdraft`, L7 via `totals_in_bounds`):
both are single symbolic conjunctions, cheap for CrossHair to satisfy.

"No counterexample" is "none found within the budget", never a proof: the Z3 proofs in proofs/
are the proof. What this adds is a symbolic search through the concrete code paths, including
`ConcreteOps` and `TotalMap`, which the Z3 proofs never execute.
"""

# crosshair: max_iterations=60

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ledger.core import engine, kernel
from ledger.core.kernel import KernelState, TransferEvent

# The bounds are read by the docstring contracts (pre/post are evaluated in this module's
# namespace), which linters cannot see: hence the explicit re-export form.
from ledger.core.limits import AMOUNT_MAX as AMOUNT_MAX
from ledger.core.limits import ID_MAX as ID_MAX
from ledger.core.limits import NS_PER_SECOND as NS_PER_SECOND
from ledger.core.limits import TIMEOUT_MAX_SECONDS as TIMEOUT_MAX_SECONDS
from ledger.core.limits import TIMESTAMP_MAX_NS as TIMESTAMP_MAX_NS
from ledger.core.ops import CONCRETE, TotalMap
from ledger.core.results import TRANSIENT_RESULTS, Result
from ledger.core.types import Transfer
from ledger.metering.allocate import allocate_units, fill_units
from specs import ledger as spec
from specs import metering

DR_ID = 1
CR_ID = 2
PENDING_ID = 3
TRANSFER_ID = 4
LEDGER = 1
CODE = 1
CREATED_AT = 2  # the two accounts were created at timestamps 1 and 2
PENDING_CREATED_AT = 3
NOW = 10
OK = int(Result.OK)
EXISTS = int(Result.EXISTS)
ID_ALREADY_FAILED = int(Result.ID_ALREADY_FAILED)
TRANSIENT = frozenset(int(r) for r in TRANSIENT_RESULTS)
STATUS_PENDING, STATUS_POSTED, STATUS_VOIDED, STATUS_EXPIRED = 1, 2, 3, 4

# --- building a tiny ledger from flat arguments ---------------------------------------------


class FlatMap:
    """The kernel's total map for CrossHair runs: `ConcreteOps.get` reads `m[key]`,
    `ConcreteOps.put` calls `m.set(key, value)`, exactly as on a `TotalMap`.

    Why not `TotalMap` itself: it keeps no entry equal to its default, so constructing it and
    every `set` compare each (symbolic) value with the default. CrossHair forks a path at each of
    those comparisons, so a state with eight symbolic totals splits into 2**8 zero/non-zero paths
    before the kernel even runs, and every kernel write forks again. With the same budget the
    searches then missed seeded bugs that they find in seconds over this map (proofs/MUTATION.md
    has the numbers). `FlatMap` stores every entry, never compares values on a write, and
    compares two maps by reading every key either holds (extensional, like `TotalMap.__eq__`).
    `TotalMap`'s own laws are checked separately by `total_map_laws` below.
    """

    __slots__ = ("default", "pairs")

    def __init__(self, default: Any, pairs: tuple[tuple[int, Any], ...] = ()) -> None:
        # A tuple of (key, value) with concrete keys: CrossHair intercepts every dict
        # construction, which made a dict-backed version spend a third of its time copying.
        self.default = default
        self.pairs = pairs

    def __getitem__(self, key: int) -> Any:
        for k, v in self.pairs:
            if k == key:
                return v
        return self.default

    def set(self, key: int, value: Any) -> FlatMap:
        kept = tuple((k, v) for k, v in self.pairs if k != key)
        return FlatMap(self.default, (*kept, (key, value)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FlatMap):
            return NotImplemented
        keys = sorted({k for k, _ in self.pairs} | {k for k, _ in other.pairs})
        return bool(self.default == other.default and all([self[k] == other[k] for k in keys]))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"FlatMap({self.default!r}, {dict(self.pairs)!r})"


_KERNEL_EMPTY = kernel.empty_state()
EMPTY = dataclasses.replace(
    _KERNEL_EMPTY,
    **{name: FlatMap(getattr(_KERNEL_EMPTY, name).default) for name in kernel.MAP_FIELDS},
)
"""`kernel.empty_state()` with every map a FlatMap; built once (it is immutable)."""


def _both(default: Any, dr_value: Any, cr_value: Any) -> FlatMap:
    return FlatMap(default, ((DR_ID, dr_value), (CR_ID, cr_value)))


def _flags(debits_guard: bool, credits_guard: bool, closed: bool) -> int:
    return (2 if debits_guard else 0) + (4 if credits_guard else 0) + (16 if closed else 0)


def two_accounts(
    guards: tuple[bool, bool, bool, bool],
    closed: tuple[bool, bool],
    dr: tuple[int, int, int, int],
    cr: tuple[int, int, int, int],
) -> KernelState:
    """Accounts DR_ID and CR_ID on LEDGER. `guards` is (dr debits guard, dr credits guard, cr
    debits guard, cr credits guard); `dr`/`cr` are (debits_pending, debits_posted,
    credits_pending, credits_posted). The ledger ghosts are the sums of the two accounts."""
    dr_dg, dr_cg, cr_dg, cr_cg = guards
    return dataclasses.replace(
        EMPTY,
        account_exists=_both(False, True, True),
        account_ledger=_both(0, LEDGER, LEDGER),
        account_code=_both(0, CODE, CODE),
        account_flags=_both(0, _flags(dr_dg, dr_cg, closed[0]), _flags(cr_dg, cr_cg, closed[1])),
        account_debits_guard=_both(False, dr_dg, cr_dg),
        account_credits_guard=_both(False, dr_cg, cr_cg),
        account_closed=_both(False, closed[0], closed[1]),
        account_timestamp=_both(0, 1, CREATED_AT),
        debits_pending=_both(0, dr[0], cr[0]),
        debits_posted=_both(0, dr[1], cr[1]),
        credits_pending=_both(0, dr[2], cr[2]),
        credits_posted=_both(0, dr[3], cr[3]),
        ledger_debits_pending=FlatMap(0, ((LEDGER, dr[0] + cr[0]),)),
        ledger_debits_posted=FlatMap(0, ((LEDGER, dr[1] + cr[1]),)),
        ledger_credits_pending=FlatMap(0, ((LEDGER, dr[2] + cr[2]),)),
        ledger_credits_posted=FlatMap(0, ((LEDGER, dr[3] + cr[3]),)),
        timestamp=CREATED_AT,
    )


def with_pending(s: KernelState, amount: int, status: int, expires_at: int) -> KernelState:
    """`s` plus transfer PENDING_ID, DR_ID -> CR_ID, flags `pending`, in the given status."""
    return dataclasses.replace(
        s,
        transfer_exists=FlatMap(False, ((PENDING_ID, True),)),
        transfer_debit_account_id=FlatMap(0, ((PENDING_ID, DR_ID),)),
        transfer_credit_account_id=FlatMap(0, ((PENDING_ID, CR_ID),)),
        transfer_amount=FlatMap(0, ((PENDING_ID, amount),)),
        transfer_ledger=FlatMap(0, ((PENDING_ID, LEDGER),)),
        transfer_code=FlatMap(0, ((PENDING_ID, CODE),)),
        transfer_flags=FlatMap(0, ((PENDING_ID, 2),)),
        transfer_timestamp=FlatMap(0, ((PENDING_ID, PENDING_CREATED_AT),)),
        transfer_expires_at=FlatMap(0, ((PENDING_ID, expires_at),)),
        transfer_status=FlatMap(0, ((PENDING_ID, status),)),
        timestamp=PENDING_CREATED_AT,
    )


def event(
    *,
    dr: int = DR_ID,
    cr: int = CR_ID,
    amount: int,
    pending_id: int = 0,
    timeout: int = 0,
    ledger: int = LEDGER,
    code: int = CODE,
    pending: bool = False,
    post: bool = False,
    void: bool = False,
    balancing_debit: bool = False,
    balancing_credit: bool = False,
) -> TransferEvent:
    """Transfer TRANSFER_ID as the kernel sees it (flags decoded)."""
    return TransferEvent(
        id=TRANSFER_ID,
        debit_account_id=dr,
        credit_account_id=cr,
        amount=amount,
        pending_id=pending_id,
        timeout=timeout,
        ledger=ledger,
        code=code,
        user_data=0,
        linked=False,
        pending=pending,
        post_pending=post,
        void_pending=void,
        balancing_debit=balancing_debit,
        balancing_credit=balancing_credit,
        reserved_flags=False,
        timestamp=0,
    )


@dataclass(frozen=True)
class View:
    """What `specs.ledger.transfer_accepted` / `transfer_effect` read: the ledger around one
    transfer between DR_ID and CR_ID (pending transfer PENDING_ID), plus `moved`."""

    exists: bool
    failed: bool
    dr_exists: bool
    cr_exists: bool
    dr_ledger: int
    cr_ledger: int
    dr_closed: bool
    cr_closed: bool
    dr_debits_guard: bool
    cr_credits_guard: bool
    dr_dp: int
    dr_dpo: int
    dr_cp: int
    dr_cpo: int
    cr_dp: int
    cr_dpo: int
    cr_cp: int
    cr_cpo: int
    p_exists: bool
    p_status: int
    p_amount: int
    p_dr: int
    p_cr: int
    p_ledger: int
    p_code: int
    p_expires_at: int
    moved: int


def view(s: KernelState, t: TransferEvent) -> View:
    """Read `s` around `t` with plain indexing (no kernel code), and the spec's `moved`."""
    d, c, p = DR_ID, CR_ID, PENDING_ID
    v = View(
        exists=s.transfer_exists[t.id],
        failed=s.failed[t.id],
        dr_exists=s.account_exists[d],
        cr_exists=s.account_exists[c],
        dr_ledger=s.account_ledger[d],
        cr_ledger=s.account_ledger[c],
        dr_closed=s.account_closed[d],
        cr_closed=s.account_closed[c],
        dr_debits_guard=s.account_debits_guard[d],
        cr_credits_guard=s.account_credits_guard[c],
        dr_dp=s.debits_pending[d],
        dr_dpo=s.debits_posted[d],
        dr_cp=s.credits_pending[d],
        dr_cpo=s.credits_posted[d],
        cr_dp=s.debits_pending[c],
        cr_dpo=s.debits_posted[c],
        cr_cp=s.credits_pending[c],
        cr_cpo=s.credits_posted[c],
        p_exists=s.transfer_exists[p],
        p_status=s.transfer_status[p],
        p_amount=s.transfer_amount[p],
        p_dr=s.transfer_debit_account_id[p],
        p_cr=s.transfer_credit_account_id[p],
        p_ledger=s.transfer_ledger[p],
        p_code=s.transfer_code[p],
        p_expires_at=s.transfer_expires_at[p],
        moved=0,
    )
    return dataclasses.replace(v, moved=spec.moved_amount(CONCRETE, t, v))


def account_ok(
    debits_guard: bool, credits_guard: bool, dp: int, dpo: int, cp: int, cpo: int
) -> bool:
    """L1 and L7 for one account, straight from specs.ledger (used as a precondition)."""
    return bool(
        spec.no_overdraft(CONCRETE, debits_guard, credits_guard, dp, dpo, cp, cpo)
        and spec.totals_in_bounds(CONCRETE, dp, dpo, cp, cpo)
    )


# --- properties (each a named statement over one run; tables below) ---------------------------


@dataclass(frozen=True)
class Property:
    """One named contract; `holds` reads the record a target returns."""

    name: str
    requirement: tuple[str, ...]
    holds: Callable[[Any], bool]


def all_hold(properties: Sequence[Property], run: Any) -> bool:
    """The conjunction of `properties` on `run` (the single post of a kernel target)."""
    ok = True
    for p in properties:
        ok = ok and bool(p.holds(run))
    return ok


class Step(NamedTuple):
    """One kernel step: the event, its time, its result code, the state before and after."""

    event: TransferEvent
    now: int
    code: int
    before: KernelState
    after: KernelState


def _account(s: KernelState, a: int) -> tuple[Any, ...]:
    return (
        s.account_debits_guard[a],
        s.account_credits_guard[a],
        s.debits_pending[a],
        s.debits_posted[a],
        s.credits_pending[a],
        s.credits_posted[a],
    )


def limits_hold(s: KernelState) -> bool:
    """L1 (no overdraft on a guarded side) and L7 (totals in bounds) on both accounts."""
    return account_ok(*_account(s, DR_ID)) and account_ok(*_account(s, CR_ID))


def sums(s: KernelState) -> tuple[int, int, int, int]:
    """The ledger's account sums: debits_pending, debits_posted, credits_pending, credits_posted."""
    return (
        s.debits_pending[DR_ID] + s.debits_pending[CR_ID],
        s.debits_posted[DR_ID] + s.debits_posted[CR_ID],
        s.credits_pending[DR_ID] + s.credits_pending[CR_ID],
        s.credits_posted[DR_ID] + s.credits_posted[CR_ID],
    )


def double_entry_kept(before: KernelState, after: KernelState) -> bool:
    """L2 as a step property: debits minus credits (pending, posted) does not change, and the
    ledger's ghost totals still equal the account sums."""
    b, a = sums(before), sums(after)
    ghosts = (
        after.ledger_debits_pending[LEDGER],
        after.ledger_debits_posted[LEDGER],
        after.ledger_credits_pending[LEDGER],
        after.ledger_credits_posted[LEDGER],
    )
    return a[0] - a[2] == b[0] - b[2] and a[1] - a[3] == b[1] - b[3] and ghosts == a


def unchanged(before: KernelState, after: KernelState) -> bool:
    """Every map equal, except the remembered failures and the clock."""
    return dataclasses.replace(after, failed=before.failed, timestamp=before.timestamp) == before


def rejected_leaves_no_trace(r: Step) -> bool:
    """A rejected event changes nothing but `failed[t.id]`, and that only on a transient result."""
    if r.code == OK:
        return True
    failed = r.before.failed.set(r.event.id, r.before.failed[r.event.id] or r.code in TRANSIENT)
    return unchanged(r.before, r.after) and r.after.failed == failed


def accepted_as_specified(r: Step) -> bool:
    """The kernel accepts exactly when `specs.ledger.transfer_accepted` says so."""
    accepted = spec.transfer_accepted(CONCRETE, r.event, view(r.before, r.event), r.now)
    return (r.code == OK) == bool(accepted)


def effect_as_specified(r: Step) -> bool:
    """An accepted transfer changes its two accounts as `specs.ledger.transfer_effect` says."""
    if r.code != OK:
        return True
    before, after = view(r.before, r.event), view(r.after, r.event)
    return bool(spec.transfer_effect(CONCRETE, r.event, before, after))


TRANSFER_PROPERTIES = (
    Property("limits_kept", ("L1", "L7"), lambda r: limits_hold(r.after)),
    Property("double_entry_kept", ("L2",), lambda r: double_entry_kept(r.before, r.after)),
    Property("rejected_changes_nothing", ("L4", "L6"), rejected_leaves_no_trace),
    Property("accepted_iff_spec", ("L1", "L4", "L7"), accepted_as_specified),
    Property("effect_as_spec", ("L2", "L3"), effect_as_specified),
)
"""A new transfer (single-phase, pending or balancing): the step keeps the invariants, a
rejection leaves no trace, and acceptance and effect are exactly the functional spec's."""


def _post_within_pending(r: Step) -> bool:
    return r.code != OK or (
        r.after.transfer_amount[TRANSFER_ID] <= r.before.transfer_amount[PENDING_ID]
        and sums(r.after)[1] - sums(r.before)[1] <= r.before.transfer_amount[PENDING_ID]
    )


def _resolved_once(r: Step) -> bool:
    was, now = r.before.transfer_status[PENDING_ID], r.after.transfer_status[PENDING_ID]
    return r.code != OK or (was == STATUS_PENDING and now in (STATUS_POSTED, STATUS_VOIDED))


RESOLVE_PROPERTIES = (
    *TRANSFER_PROPERTIES[:3],
    Property("post_within_pending", ("L5",), _post_within_pending),
    Property("resolved_once", ("L5",), _resolved_once),
    Property("accepted_iff_spec", ("L5", "L7"), accepted_as_specified),
    Property("effect_as_spec", ("L3", "L5"), effect_as_specified),
)
"""A post or void: the invariants, the functional spec, and L5 (never above the pending amount,
only a pending transfer is resolved, and it ends posted or voided)."""


class Replay(NamedTuple):
    first: Step
    second: Step


def _settled(r: Replay) -> bool:
    """The first attempt left the id taken: stored, or failed with a transient result."""
    return r.first.code == OK or r.first.code in TRANSIENT


REPLAY_PROPERTIES = (
    Property("replay_never_accepted", ("L4",), lambda r: not _settled(r) or r.second.code != OK),
    Property(
        "replay_changes_nothing",
        ("L4",),
        lambda r: not _settled(r) or unchanged(r.first.after, r.second.after),
    ),
    Property(
        "same_replay_exists",
        ("L4",),
        lambda r: (
            r.first.code != OK
            or r.first.event.amount != r.second.event.amount
            or r.second.code == EXISTS
        ),
    ),
    Property(
        "failed_replay_refused",
        ("L4",),
        lambda r: r.first.code not in TRANSIENT or r.second.code == ID_ALREADY_FAILED,
    ),
)
"""The same transfer id twice: once it is stored or has failed transiently, a replay (same
fields, amount possibly different) is never accepted and changes nothing (L4)."""


class Expiry(NamedTuple):
    due: bool
    now: int
    before: KernelState
    after: KernelState


def _due_iff_timed_out(r: Expiry) -> bool:
    status = r.before.transfer_status[PENDING_ID]
    expires_at = r.before.transfer_expires_at[PENDING_ID]
    return bool(r.due == (status == STATUS_PENDING and expires_at != 0 and expires_at <= r.now))


def _releases_exactly_once(r: Expiry) -> bool:
    if not r.due:
        return True
    amount = r.before.transfer_amount[PENDING_ID]
    b, a = sums(r.before), sums(r.after)
    return (
        a == (b[0] - amount, b[1], b[2] - amount, b[3])
        and r.after.transfer_status[PENDING_ID] == STATUS_EXPIRED
    )


EXPIRY_PROPERTIES = (
    Property("due_iff_timed_out", ("L5",), _due_iff_timed_out),
    Property("limits_kept", ("L1", "L7"), lambda r: limits_hold(r.after)),
    Property("double_entry_kept", ("L2",), lambda r: double_entry_kept(r.before, r.after)),
    Property("not_due_changes_nothing", ("L5",), lambda r: r.due or unchanged(r.before, r.after)),
    Property("releases_exactly_once", ("L5",), _releases_exactly_once),
)
"""Expiry of a pending transfer: due exactly when its time has come, and then it releases exactly
the pending amount on both sides and becomes expired (so it cannot be released again)."""


# --- kernel targets ---------------------------------------------------------------------------


def kernel_transfer(
    dr_dp: int,
    dr_dpo: int,
    dr_cpo: int,
    cr_dpo: int,
    cr_cp: int,
    cr_cpo: int,
    dr_debits_guard: bool,
    cr_credits_guard: bool,
    amount: int,
    pending: bool,
) -> Step:
    """A new single-phase or pending transfer DR_ID -> CR_ID (kernel.create_transfer) between two
    open accounts, totals anywhere in range (so the overflow checks are reachable).

    pre: account_ok(dr_debits_guard, False, dr_dp, dr_dpo, 0, dr_cpo)
    pre: account_ok(False, cr_credits_guard, 0, cr_dpo, cr_cp, cr_cpo)
    pre: 0 <= amount <= AMOUNT_MAX
    post: all_hold(TRANSFER_PROPERTIES, __return__)
    """
    # crosshair: max_iterations=120
    s = two_accounts(
        (dr_debits_guard, False, False, cr_credits_guard),
        (False, False),
        (dr_dp, dr_dpo, 0, dr_cpo),
        (0, cr_dpo, cr_cp, cr_cpo),
    )
    t = event(amount=amount, pending=pending)
    after, code = kernel.create_transfer(s, t, NOW, CONCRETE)
    return Step(t, NOW, code, s, after)


def kernel_guarded_transfer(
    dr_dp: int,
    dr_dpo: int,
    dr_cpo: int,
    cr_dpo: int,
    cr_cp: int,
    cr_cpo: int,
    amount: int,
    pending: bool,
    balancing_debit: bool,
    balancing_credit: bool,
) -> Step:
    """A new single-phase, pending or balancing transfer from a debits-guarded account to a
    credits-guarded one. Totals stay below 2**61, so no overflow check can fire and the search
    spends its paths on the balance limits and the balancing amount.

    pre: account_ok(True, False, dr_dp, dr_dpo, 0, dr_cpo)
    pre: account_ok(False, True, 0, cr_dpo, cr_cp, cr_cpo)
    pre: dr_cpo < 2**61 and cr_dpo < 2**61 and 0 <= amount < 2**61
    post: all_hold(TRANSFER_PROPERTIES, __return__)
    """
    # crosshair: max_iterations=120
    s = two_accounts(
        (True, False, False, True),
        (False, False),
        (dr_dp, dr_dpo, 0, dr_cpo),
        (0, cr_dpo, cr_cp, cr_cpo),
    )
    t = event(
        amount=amount,
        pending=pending,
        balancing_debit=balancing_debit,
        balancing_credit=balancing_credit,
    )
    after, code = kernel.create_transfer(s, t, NOW, CONCRETE)
    return Step(t, NOW, code, s, after)


def kernel_transfer_options(
    amount: int,
    timeout: int,
    now: int,
    pending: bool,
    dr_closed: bool,
    cr_closed: bool,
    same_ledger: bool,
) -> Step:
    """A new transfer where the accounts may be closed or on another ledger, and a pending
    timeout may overflow the clock. The debit account holds 100 (credits posted).

    pre: 0 <= amount <= AMOUNT_MAX and 0 <= timeout <= TIMEOUT_MAX_SECONDS
    pre: CREATED_AT < now <= TIMESTAMP_MAX_NS
    post: all_hold(TRANSFER_PROPERTIES, __return__)
    """
    # crosshair: max_iterations=60
    s = two_accounts(
        (True, False, False, False), (dr_closed, cr_closed), (0, 0, 0, 100), (0, 100, 0, 0)
    )
    t = event(amount=amount, timeout=timeout, pending=pending, ledger=1 if same_ledger else 2)
    after, code = kernel.create_transfer(s, t, now, CONCRETE)
    return Step(t, now, code, s, after)


def kernel_resolve(
    dr_dp: int,
    dr_dpo: int,
    dr_cpo: int,
    cr_cp: int,
    cr_cpo: int,
    dr_debits_guard: bool,
    p_amount: int,
    p_status: int,
    p_expires_at: int,
    amount: int,
    post: bool,
    name_accounts: bool,
    now: int,
) -> Step:
    """Post (`post`) or void pending transfer PENDING_ID (kernel.create_transfer). The post or
    void names the accounts, ledger and code itself when `name_accounts`, else leaves them zero.

    pre: account_ok(dr_debits_guard, False, dr_dp, dr_dpo, 0, dr_cpo)
    pre: account_ok(False, False, 0, 0, cr_cp, cr_cpo)
    pre: 0 < p_amount <= AMOUNT_MAX and 0 <= amount <= AMOUNT_MAX
    pre: 0 <= p_status <= 4 and 0 <= p_expires_at <= TIMESTAMP_MAX_NS
    pre: PENDING_CREATED_AT < now <= TIMESTAMP_MAX_NS
    pre: p_status != 1 or (p_amount <= dr_dp and p_amount <= cr_cp)
    post: all_hold(RESOLVE_PROPERTIES, __return__)
    """
    # crosshair: max_iterations=100
    s = with_pending(
        two_accounts(
            (dr_debits_guard, False, False, False),
            (False, False),
            (dr_dp, dr_dpo, 0, dr_cpo),
            (0, 0, cr_cp, cr_cpo),
        ),
        p_amount,
        p_status,
        p_expires_at,
    )
    named = 1 if name_accounts else 0
    t = event(
        dr=DR_ID * named,
        cr=CR_ID * named,
        amount=amount,
        pending_id=PENDING_ID,
        ledger=LEDGER * named,
        code=CODE * named,
        post=post,
        void=not post,
    )
    after, code = kernel.create_transfer(s, t, now, CONCRETE)
    return Step(t, now, code, s, after)


def kernel_replay(
    dr_dpo: int,
    dr_cpo: int,
    dr_debits_guard: bool,
    dr_closed: bool,
    amount: int,
    replay_amount: int,
    pending: bool,
    balancing_debit: bool,
) -> Replay:
    """Transfer TRANSFER_ID, then the same id again (same fields but the amount, which may
    differ), one tick later.

    pre: account_ok(dr_debits_guard, False, 0, dr_dpo, 0, dr_cpo)
    pre: 0 <= amount <= AMOUNT_MAX and 0 <= replay_amount <= AMOUNT_MAX
    post: all_hold(REPLAY_PROPERTIES, __return__)
    """
    # crosshair: max_iterations=60
    s = two_accounts(
        (dr_debits_guard, False, False, False), (dr_closed, False), (0, dr_dpo, 0, dr_cpo), (0,) * 4
    )
    t = event(amount=amount, pending=pending, balancing_debit=balancing_debit)
    s1, code1 = kernel.create_transfer(s, t, NOW, CONCRETE)
    t2 = dataclasses.replace(t, amount=replay_amount)
    s2, code2 = kernel.create_transfer(s1, t2, NOW + 1, CONCRETE)
    return Replay(Step(t, NOW, code1, s, s1), Step(t2, NOW + 1, code2, s1, s2))


def kernel_expire(
    dr_dp: int,
    cr_cp: int,
    p_amount: int,
    p_status: int,
    p_expires_at: int,
    now: int,
) -> Expiry:
    """Expire pending transfer PENDING_ID at `now` (kernel.expire_pending).

    pre: 0 <= dr_dp <= AMOUNT_MAX and 0 <= cr_cp <= AMOUNT_MAX and 0 < p_amount <= AMOUNT_MAX
    pre: 0 <= p_status <= 4 and 0 <= p_expires_at <= TIMESTAMP_MAX_NS
    pre: PENDING_CREATED_AT < now <= TIMESTAMP_MAX_NS
    pre: p_status != 1 or (p_amount <= dr_dp and p_amount <= cr_cp)
    post: all_hold(EXPIRY_PROPERTIES, __return__)
    """
    # crosshair: max_iterations=60
    s = with_pending(
        two_accounts((False,) * 4, (False, False), (dr_dp, 0, 0, 0), (0, 0, cr_cp, 0)),
        p_amount,
        p_status,
        p_expires_at,
    )
    after, due = kernel.expire_pending(s, PENDING_ID, now, CONCRETE)
    return Expiry(due, now, s, after)


def kernel_amount(
    dr_dp: int,
    dr_dpo: int,
    dr_cpo: int,
    cr_dpo: int,
    cr_cp: int,
    cr_cpo: int,
    p_amount: int,
    amount: int,
    void: bool,
    balancing_debit: bool,
    balancing_credit: bool,
) -> tuple[int, int]:
    """kernel._amount (what a transfer moves) against `specs.ledger.moved_amount`.

    pre: account_ok(False, False, dr_dp, dr_dpo, 0, dr_cpo)
    pre: account_ok(False, False, 0, cr_dpo, cr_cp, cr_cpo)
    pre: 0 < p_amount <= AMOUNT_MAX and 0 <= amount <= AMOUNT_MAX
    post: __return__[0] == __return__[1]  # moved_as_spec: L1,L3,L5
    post: void or 0 <= __return__[0] <= amount  # never_more_than_asked: L7
    """
    # crosshair: max_iterations=80
    accounts = two_accounts(
        (False,) * 4, (False, False), (dr_dp, dr_dpo, 0, dr_cpo), (0, cr_dpo, cr_cp, cr_cpo)
    )
    s = with_pending(
        accounts,
        p_amount,
        STATUS_PENDING,
        0,
    )
    t = event(
        dr=0 if void else DR_ID,
        cr=0 if void else CR_ID,
        amount=amount,
        pending_id=PENDING_ID if void else 0,
        void=void,
        balancing_debit=balancing_debit,
        balancing_credit=balancing_credit,
    )
    v = kernel._view(s, t, CONCRETE)
    moved = kernel._amount(t, v, kernel._accounts(s, v, CONCRETE), CONCRETE)
    return int(moved), int(view(s, t).moved)


def total_map_laws(default: int, held: int, key: int, value: int) -> tuple[TotalMap, TotalMap]:
    """ConcreteOps' map, `TotalMap`, under one write: the map holding `held` at key 1 (and the
    default elsewhere), and the same map after `set(key, value)`.

    pre: 1 <= key <= 3
    post: __return__[1][key] == value  # read_after_write: L3
    post: key == 1 or __return__[1][1] == held  # other_keys_unchanged: L3
    post: __return__[0][key] == (held if key == 1 else default)  # original_unchanged: L3
    post: (__return__[1] == __return__[0]) == (value == __return__[0][key])  # extensional: L3
    post: __return__[1][4] == default  # unwritten_key_reads_default: L3
    """
    # crosshair: max_iterations=60
    before = TotalMap(default, {1: held})
    return before, before.set(key, value)


# --- engine helpers (ledger.core.engine), each a pure function of what it reads ---------------


def _row(flags: int, dp: int, dpo: int, cp: int, cpo: int) -> Any:
    """An engine account row with the given totals (a fresh object; nothing shared is mutated)."""
    return engine._Row((DR_ID, LEDGER, CODE, flags, 0, dp, dpo, cp, cpo, CREATED_AT))


def spec_moved(
    amount: int,
    balancing_debit: bool,
    balancing_credit: bool,
    dr: tuple[int, int, int],
    cr: tuple[int, int, int],
) -> int:
    """`specs.ledger.moved_amount` for a new transfer; `dr` is (debits_pending, debits_posted,
    credits_posted), `cr` is (credits_pending, credits_posted, debits_posted)."""
    s = two_accounts(
        (False,) * 4, (False, False), (dr[0], dr[1], 0, dr[2]), (0, cr[2], cr[0], cr[1])
    )
    t = event(amount=amount, balancing_debit=balancing_debit, balancing_credit=balancing_credit)
    return int(view(s, t).moved)


class Balanced(NamedTuple):
    got: int  # what engine._balanced returned
    per_spec: int  # specs.ledger.moved_amount for the same transfer


def room(limit: int, used: int) -> int:
    return max(0, limit - used)


def engine_balanced(
    amount: int,
    balancing_debit: bool,
    balancing_credit: bool,
    dr_dp: int,
    dr_dpo: int,
    dr_cpo: int,
    cr_cp: int,
    cr_cpo: int,
    cr_dpo: int,
) -> Balanced:
    """engine._balanced: what a balancing transfer moves.

    pre: 0 <= amount <= AMOUNT_MAX
    pre: account_ok(False, False, dr_dp, dr_dpo, 0, dr_cpo)
    pre: account_ok(False, False, 0, cr_dpo, cr_cp, cr_cpo)
    post: 0 <= __return__.got <= amount  # never_more_than_asked: L7
    post: not balancing_debit or __return__.got <= room(dr_cpo, dr_dpo + dr_dp)  # debit_room: L1
    post: not balancing_credit or __return__.got <= room(cr_dpo, cr_cpo + cr_cp)  # credit_room: L1
    post: __return__.got == __return__.per_spec  # moved_as_spec: L1,L3
    """
    # crosshair: max_iterations=40
    flags = (16 if balancing_debit else 0) + (32 if balancing_credit else 0)
    dr = _row(0, dr_dp, dr_dpo, 0, dr_cpo)
    cr = _row(0, 0, cr_dpo, cr_cp, cr_cpo)
    got = engine._balanced(flags, amount, dr, cr)
    dr_totals, cr_totals = (dr_dp, dr_dpo, dr_cpo), (cr_cp, cr_cpo, cr_dpo)
    per_spec = spec_moved(amount, balancing_debit, balancing_credit, dr_totals, cr_totals)
    return Balanced(got, per_spec)


class Overflow(NamedTuple):
    code: int  # what engine._overflow_check returned
    in_bounds: bool  # every total after the move fits (specs.ledger.totals_in_bounds)
    clock_fits: bool  # a pending transfer's expiry time fits TIMESTAMP_MAX_NS

    @property
    def all_fit(self) -> bool:
        return self.in_bounds and self.clock_fits


def in_bounds_after(
    amount: int, pending: bool, released: int, dr: tuple[int, int], cr: tuple[int, int]
) -> bool:
    """Every total after the move fits (L7): `dr` is (debits_pending, debits_posted), `cr` is
    (credits_pending, credits_posted); `released` is freed from pending first (a post)."""
    dp, dpo = dr[0] - released, dr[1]
    cp, cpo = cr[0] - released, cr[1]
    if pending:
        dp, cp = dp + amount, cp + amount
    else:
        dpo, cpo = dpo + amount, cpo + amount
    return bool(spec.totals_in_bounds(CONCRETE, dp, dpo, cp, cpo))


def engine_overflow_check(
    dr_dp: int,
    dr_dpo: int,
    cr_cp: int,
    cr_cpo: int,
    amount: int,
    pending: bool,
    timeout: int,
    now: int,
    released: int,
) -> Overflow:
    """engine._overflow_check: OK exactly when no total (and no expiry time) passes its bound.
    `released` is the pending amount a post frees (then `pending` is False).

    pre: spec.totals_in_bounds(CONCRETE, dr_dp, dr_dpo, cr_cp, cr_cpo)
    pre: 0 <= amount <= AMOUNT_MAX and 0 <= released
    pre: 0 <= timeout <= TIMEOUT_MAX_SECONDS and 0 < now <= TIMESTAMP_MAX_NS
    pre: released <= dr_dp and released <= cr_cp and (released == 0 or not pending)
    post: __return__.code != OK or __return__.in_bounds  # ok_only_in_bounds: L7
    post: __return__.code != OK or __return__.clock_fits  # ok_only_clock_fits: L7
    post: __return__.code == OK or not __return__.all_fit  # refused_only_out_of_bounds: L7
    """
    # crosshair: max_iterations=40
    dr = _row(0, dr_dp, dr_dpo, 0, 0)
    cr = _row(0, 0, 0, cr_cp, cr_cpo)
    code = int(engine._overflow_check(dr, cr, amount, 2 if pending else 0, timeout, now, released))
    return Overflow(
        code,
        in_bounds_after(amount, pending, released, (dr_dp, dr_dpo), (cr_cp, cr_cpo)),
        not pending or now + timeout * NS_PER_SECOND <= TIMESTAMP_MAX_NS,
    )


def no_overdraft_after(
    guards: tuple[bool, bool],
    amount: int,
    pending: bool,
    dr: tuple[int, int, int],
    cr: tuple[int, int, int],
) -> bool:
    """L1 on both accounts after a new transfer of `amount`: `guards` is (debit account's
    debits guard, credit account's credits guard); `dr` is (debits_pending, debits_posted,
    credits_posted), `cr` is (credits_pending, credits_posted, debits_posted)."""
    held, posted = (amount, 0) if pending else (0, amount)
    return bool(
        spec.no_overdraft(CONCRETE, guards[0], False, dr[0] + held, dr[1] + posted, 0, dr[2])
        and spec.no_overdraft(CONCRETE, False, guards[1], 0, cr[2], cr[0] + held, cr[1] + posted)
    )


def engine_fits(
    dr_dp: int,
    dr_dpo: int,
    dr_cpo: int,
    cr_cp: int,
    cr_cpo: int,
    cr_dpo: int,
    dr_debits_guard: bool,
    cr_credits_guard: bool,
    amount: int,
    pending: bool,
) -> tuple[bool, bool]:
    """engine._fits against L1: a new transfer fits the balance limits exactly when no guarded
    side is overdrawn after it (`no_overdraft_after`, from specs.ledger.no_overdraft).

    pre: account_ok(dr_debits_guard, False, dr_dp, dr_dpo, 0, dr_cpo)
    pre: account_ok(False, cr_credits_guard, 0, cr_dpo, cr_cp, cr_cpo)
    pre: 0 < amount <= AMOUNT_MAX
    post: __return__[0] == __return__[1]  # fits_iff_no_overdraft: L1
    """
    # crosshair: max_iterations=40
    dr = _row(2 if dr_debits_guard else 0, dr_dp, dr_dpo, 0, dr_cpo)
    cr = _row(4 if cr_credits_guard else 0, 0, cr_dpo, cr_cp, cr_cpo)
    fits = engine._fits(0, amount, dr, cr, 2 if pending else 0)
    guards = (dr_debits_guard, cr_credits_guard)
    dr_totals, cr_totals = (dr_dp, dr_dpo, dr_cpo), (cr_cp, cr_cpo, cr_dpo)
    return fits, no_overdraft_after(guards, amount, pending, dr_totals, cr_totals)


def _kernel_code(checks: list[tuple[Any, Result]]) -> int:
    return int(kernel.first_result(CONCRETE, checks, OK))


def engine_field_check(
    debit_account_id: int,
    credit_account_id: int,
    amount: int,
    pending_id: int,
    timeout: int,
    ledger: int,
    code: int,
    pending: bool,
    post: bool,
    void: bool,
    balancing_debit: bool,
    balancing_credit: bool,
) -> tuple[int, int]:
    """engine._field_check against the kernel's field checks: the same first failing result.

    pre: 0 <= debit_account_id <= ID_MAX and 0 <= credit_account_id <= ID_MAX
    pre: 0 <= pending_id <= ID_MAX and 0 <= amount <= AMOUNT_MAX
    pre: 0 <= timeout <= TIMEOUT_MAX_SECONDS and 0 <= ledger and 0 <= code
    post: __return__[0] == __return__[1]  # engine_matches_kernel: L4,L5,L7
    """
    # crosshair: max_iterations=150
    flags = (
        (2 if pending else 0)
        + (4 if post else 0)
        + (8 if void else 0)
        + (16 if balancing_debit else 0)
        + (32 if balancing_credit else 0)
    )
    t = Transfer(
        id=TRANSFER_ID,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        pending_id=pending_id,
        timeout=timeout,
        ledger=ledger,
        code=code,
        flags=flags,
    )
    k = event(
        dr=debit_account_id,
        cr=credit_account_id,
        amount=amount,
        pending_id=pending_id,
        timeout=timeout,
        ledger=ledger,
        code=code,
        pending=pending,
        post=post,
        void=void,
        balancing_debit=balancing_debit,
        balancing_credit=balancing_credit,
    )
    v = kernel._view(EMPTY, k, CONCRETE)
    return int(engine._field_check(t, flags)), _kernel_code(kernel._field_checks(k, v, CONCRETE))


def engine_pending_check(
    debit_account_id: int,
    credit_account_id: int,
    ledger: int,
    code: int,
    amount: int,
    post: bool,
    p_amount: int,
    p_status: int,
    p_expires_at: int,
    now: int,
) -> tuple[int, int]:
    """engine._pending_check against the kernel's pending-transfer checks (for a post or void of
    an existing transfer PENDING_ID): the same first failing result.

    pre: 0 <= debit_account_id <= ID_MAX and 0 <= credit_account_id <= ID_MAX
    pre: 0 <= ledger and 0 <= code and 0 <= amount <= AMOUNT_MAX and 0 < p_amount <= AMOUNT_MAX
    pre: 0 <= p_status <= 4 and 0 <= p_expires_at <= TIMESTAMP_MAX_NS
    pre: PENDING_CREATED_AT < now <= TIMESTAMP_MAX_NS
    post: __return__[0] == __return__[1]  # engine_matches_kernel: L5
    """
    # crosshair: max_iterations=100
    flags = 4 if post else 8
    t = Transfer(
        id=TRANSFER_ID,
        debit_account_id=debit_account_id,
        credit_account_id=credit_account_id,
        amount=amount,
        pending_id=PENDING_ID,
        ledger=ledger,
        code=code,
        flags=flags,
    )
    stored = (DR_ID, CR_ID, p_amount, 0, 0, LEDGER, CODE, 0, 2, PENDING_CREATED_AT)
    engine_code = engine._pending_check(t, flags, stored, p_status, p_expires_at, now)
    s = with_pending(
        two_accounts((False,) * 4, (False, False), (0,) * 4, (0,) * 4),
        p_amount,
        p_status,
        p_expires_at,
    )
    k = event(
        dr=debit_account_id,
        cr=credit_account_id,
        amount=amount,
        pending_id=PENDING_ID,
        ledger=ledger,
        code=code,
        post=post,
        void=not post,
    )
    v = kernel._view(s, k, CONCRETE)
    return int(engine_code), _kernel_code(kernel._pending_checks(k, v, now, s, CONCRETE))


# --- the waterfall's allocation (ledger.metering.allocate) ------------------------------------


class Allocation(NamedTuple):
    """One allocation over three layers: what was asked, the rooms, and what the code gave."""

    request: int
    rooms: tuple[int, int, int]
    allowed: bool
    parts: tuple[int, ...]


ALLOCATION_PROPERTIES = (
    Property(
        "parts_within_rooms", ("M3",), lambda r: metering.parts_within_rooms(r.rooms, r.parts)
    ),
    Property("waterfall_order", ("M3",), lambda r: metering.waterfall_order(r.rooms, r.parts)),
    Property(
        "all_or_nothing",
        ("M3",),
        lambda r: metering.allocation_complete(r.request, r.rooms, r.allowed, r.parts),
    ),
)
"""A decision's split (M3): within each room, in the plan's order, all or nothing."""

FILL_PROPERTIES = (
    *ALLOCATION_PROPERTIES[:2],
    Property(
        "sums_to_covered",
        ("M3",),
        lambda r: metering.fill_complete(r.request, r.rooms, r.parts),
    ),
)
"""A completion's fill (M3): within each room, in the plan's order, min(request, rooms) in all."""


def allocation_waterfall(request: int, room_1: int, room_2: int, room_3: int) -> Allocation:
    """`allocate_units` over three layers (the Z3 proofs cover 1 to 8 layers of the same code
    on Z3 terms; this runs it on Python ints through `ConcreteOps`).

    pre: 0 < request and 0 <= room_1 and 0 <= room_2 and 0 <= room_3
    post: all_hold(ALLOCATION_PROPERTIES, __return__)
    """
    # crosshair: max_iterations=40
    rooms = (room_1, room_2, room_3)
    allowed, parts = allocate_units(request, rooms)
    return Allocation(request, rooms, allowed, tuple(parts))


def fill_waterfall(request: int, room_1: int, room_2: int, room_3: int) -> Allocation:
    """`fill_units` over three layers; `allowed` records whether the rooms cover the request.

    pre: 0 <= request and 0 <= room_1 and 0 <= room_2 and 0 <= room_3
    post: all_hold(FILL_PROPERTIES, __return__)
    """
    # crosshair: max_iterations=40
    rooms = (room_1, room_2, room_3)
    parts = fill_units(request, rooms)
    return Allocation(request, rooms, request <= room_1 + room_2 + room_3, tuple(parts))
