"""The Z3 proofs of the kernel: every obligation holds, none is vacuous, and the checker itself
fails when it should (counterexample, vacuity). Also: `Z3Ops` computes what `ConcreteOps` does
(the proofs run the kernel on Z3Ops, the reference ledger on ConcreteOps)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import z3
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core import kernel
from ledger.core.ops import CONCRETE, TotalMap
from proofs import z3proofs
from proofs.obligations_base import Obligation
from proofs.report import Outcome
from proofs.z3ops import Z3, Z3Ops

OBLIGATIONS = z3proofs.obligations()
NAMES = [o.name for o in OBLIGATIONS]
STEP_KINDS = ("create_transfer", "create_account", "expire_pending")


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_obligation_holds(proved: dict[str, Outcome], name: str) -> None:
    outcome = proved[name]
    assert outcome.holds, f"{name}: {outcome.detail}"
    assert outcome.checker == "z3"
    assert outcome.requirement


def test_there_are_enough_obligations() -> None:
    assert len(OBLIGATIONS) >= 25
    assert len(set(NAMES)) == len(NAMES)


def test_every_invariant_conjunct_is_proved_for_init_and_every_step() -> None:
    conjuncts = {n.removeprefix("init.") for n in NAMES if n.startswith("init.")}
    for required in (
        "L1.debits_must_not_exceed_credits",
        "L1.credits_must_not_exceed_debits",
        "L7.totals_in_bounds",
        "L2.double_entry",
        "L2.ghost_debits_posted_is_sum",
    ):
        assert required in conjuncts
    for conjunct in conjuncts:
        for kind in STEP_KINDS:
            assert f"{conjunct}.{kind}" in NAMES


def test_every_obligation_has_vacuity_checks() -> None:
    for o in OBLIGATIONS:
        labels = [label for label, _ in o.sanity]
        assert labels and labels[0] == "hypotheses", o.name
        if o.name.endswith(STEP_KINDS) and not o.name.startswith("init."):
            assert (
                "accepting step" in labels
                or "same body" in labels
                or o.name.startswith("L4.failed_id")
            ), o.name


def test_requirements_are_covered() -> None:
    covered = {r for o in OBLIGATIONS for r in o.requirement}
    assert {"L1", "L2", "L4", "L5", "L6", "L7"} <= covered


# --- the checker fails when it must -----------------------------------------------------------

X = z3.Int("x")


def test_a_false_obligation_gives_a_counterexample() -> None:
    o = Obligation(
        "demo.false", ("L1",), (X >= 0,), X > 5, (("hypotheses", z3.BoolVal(True)),), (("x", X),)
    )
    outcome = z3proofs.discharge(o)
    assert not outcome.holds
    assert outcome.detail.startswith("counterexample: x=")


def test_contradictory_hypotheses_are_reported_vacuous() -> None:
    o = Obligation(
        "demo.vacuous", ("L1",), (X > 0, X < 0), X == 7, (("hypotheses", z3.BoolVal(True)),)
    )
    outcome = z3proofs.discharge(o)
    assert not outcome.holds
    assert "vacuous" in outcome.detail


def test_an_unreachable_accepting_step_is_reported_vacuous() -> None:
    o = Obligation(
        "demo.no_accept",
        ("L1",),
        (X >= 0,),
        X >= 0,
        (("hypotheses", z3.BoolVal(True)), ("accepting step", X < 0)),
    )
    outcome = z3proofs.discharge(o)
    assert not outcome.holds
    assert "accepting step" in outcome.detail


def test_smt_lib_is_saved(tmp_path: Path) -> None:
    for o in OBLIGATIONS[:3]:
        assert z3proofs.discharge(o, smt_dir=tmp_path).holds
    saved = sorted(p.name for p in tmp_path.iterdir())
    assert any(name.startswith(OBLIGATIONS[0].name) for name in saved)
    text = (tmp_path / f"{OBLIGATIONS[0].name}.smt2").read_text()
    assert "(check-sat)" in text


# --- Z3Ops -------------------------------------------------------------------------------------


def test_z3ops_folds_python_literals() -> None:
    ops = Z3Ops()
    b = z3.Bool("b")
    assert ops.ite(True, 1, 2) == 1 and ops.ite(False, 1, 2) == 2
    assert ops.and_(True, True) is True and ops.and_(b, False) is False
    assert ops.or_(False, False) is False and ops.or_(b, True) is True
    assert z3.eq(ops.and_(True, b), b) and z3.eq(ops.or_(False, b), b)
    assert ops.not_(True) is False
    assert z3.eq(ops.ite(z3.BoolVal(True), X, 3), X)


def _to_z3(value: Any) -> Any:
    if isinstance(value, TotalMap):
        array = z3.K(z3.IntSort(), value.default)
        for key, item in value.items():
            array = z3.Store(array, key, item)
        return array
    if isinstance(value, bool):
        return z3.BoolVal(value)
    return z3.IntVal(value)


def _lift(record: Any) -> Any:
    values = {f.name: _to_z3(getattr(record, f.name)) for f in dataclasses.fields(record)}
    return type(record)(**values)


def _same(term: Any, expected: Any) -> bool:
    value = z3.simplify(term)
    if isinstance(expected, bool):
        return bool(z3.is_true(value)) == expected
    return bool(value.as_long() == expected)


def _account(i: int, guard: str = "") -> kernel.AccountEvent:
    return kernel.AccountEvent(
        id=i,
        ledger=1,
        code=1,
        user_data=0,
        linked=False,
        debits_guard=guard == "debits",
        credits_guard=guard == "credits",
        history=False,
        closed=False,
        reserved_flags=False,
        debits_pending=0,
        debits_posted=0,
        credits_pending=0,
        credits_posted=0,
        timestamp=0,
    )


def _transfer(**fields: Any) -> kernel.TransferEvent:
    base = dict(
        id=0,
        debit_account_id=0,
        credit_account_id=0,
        amount=0,
        pending_id=0,
        timeout=0,
        ledger=1,
        code=1,
        user_data=0,
        linked=False,
        pending=False,
        post_pending=False,
        void_pending=False,
        balancing_debit=False,
        balancing_credit=False,
        reserved_flags=False,
        timestamp=0,
    )
    return kernel.TransferEvent(**{**base, **fields})


def _seed_state() -> kernel.KernelState:
    """Three accounts (one per guard), funding, posted charges and a live pending hold."""
    s = kernel.empty_state()
    events: list[Any] = [
        _account(1, "debits"),
        _account(2),
        _account(3, "credits"),
        _transfer(id=10, debit_account_id=2, credit_account_id=1, amount=100),
        _transfer(id=13, debit_account_id=3, credit_account_id=2, amount=50),
        _transfer(id=11, debit_account_id=1, credit_account_id=3, amount=40),
        _transfer(
            id=12, debit_account_id=1, credit_account_id=2, amount=30, pending=True, timeout=5
        ),
    ]
    for ts, e in enumerate(events, start=1):
        s, code = kernel.step(s, e, ts, CONCRETE)
        assert code == 0
    return s


SEED = _seed_state()

_ids = st.sampled_from([20, 21, 20, 10, 0])
_accounts = st.integers(1, 4)
_new_money = st.builds(
    _transfer,
    id=_ids,
    debit_account_id=_accounts,
    credit_account_id=_accounts,
    amount=st.integers(1, 120),
    pending=st.booleans(),
    timeout=st.integers(0, 2),
    balancing_debit=st.booleans(),
    balancing_credit=st.booleans(),
)
_resolutions = st.builds(
    _transfer,
    id=_ids,
    debit_account_id=st.sampled_from([0, 0, 1, 2]),
    credit_account_id=st.sampled_from([0, 0, 2, 3]),
    amount=st.integers(0, 40),
    pending_id=st.sampled_from([12, 12, 10, 99]),
    ledger=st.integers(0, 1),
    code=st.integers(0, 1),
    post_pending=st.booleans(),
    void_pending=st.just(True),
).map(lambda t: dataclasses.replace(t, void_pending=not t.post_pending))
_anything = st.builds(
    _transfer,
    id=_ids,
    debit_account_id=st.integers(0, 4),
    credit_account_id=st.integers(0, 4),
    amount=st.integers(0, 120),
    pending_id=st.sampled_from([0, 10, 12, 13]),
    timeout=st.integers(0, 2),
    ledger=st.integers(0, 2),
    code=st.integers(0, 1),
    pending=st.booleans(),
    post_pending=st.booleans(),
    void_pending=st.booleans(),
    balancing_debit=st.booleans(),
    balancing_credit=st.booleans(),
)
transfers = st.one_of(_new_money, _resolutions, _anything)


@settings(max_examples=50)
@given(t=transfers, ts=st.sampled_from([7, 5_000_000_000, 10**10]))
def test_z3ops_runs_create_transfer_like_concrete_ops(t: kernel.TransferEvent, ts: int) -> None:
    expected, code = kernel.create_transfer(SEED, t, ts, CONCRETE)
    lifted, z3_code = kernel.create_transfer(_lift(SEED), _lift(t), z3.IntVal(ts), Z3)
    assert _same(z3_code, code)
    for name in kernel.MAP_FIELDS:
        concrete, term = getattr(expected, name), getattr(lifted, name)
        for key in {*concrete, *getattr(SEED, name), 0, 1, 2, 3, 4, 20, 21, 99}:
            assert _same(z3.Select(term, key), concrete[key]), (name, key)


def test_z3ops_runs_expiry_and_account_creation_like_concrete_ops() -> None:
    for p, ts in ((12, 10**10), (12, 7), (11, 10**10)):
        expected, due = kernel.expire_pending(SEED, p, ts, CONCRETE)
        lifted, z3_due = kernel.expire_pending(_lift(SEED), z3.IntVal(p), z3.IntVal(ts), Z3)
        assert _same(z3_due, due)
        for name in ("debits_pending", "credits_pending", "transfer_status"):
            for key in (1, 2, 3, 12):
                assert _same(z3.Select(getattr(lifted, name), key), getattr(expected, name)[key])
    for a in (_account(4, "debits"), _account(1), _account(0)):
        expected, code = kernel.create_account(SEED, a, 9, CONCRETE)
        lifted, z3_code = kernel.create_account(_lift(SEED), _lift(a), z3.IntVal(9), Z3)
        assert _same(z3_code, code)
        for key in (0, 1, 4):
            assert _same(z3.Select(lifted.account_exists, key), expected.account_exists[key])
